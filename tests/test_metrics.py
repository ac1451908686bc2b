"""rmse and mae against their numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from autorec import mae, rmse


def test_rmse_mae_match_numpy() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 5, 1000)
    pred = truth + rng.normal(0, 0.7, 1000)
    assert rmse(truth, pred) == pytest.approx(np.sqrt(np.mean((pred - truth) ** 2)), rel=1e-12)
    assert mae(truth, pred) == pytest.approx(np.mean(np.abs(pred - truth)), rel=1e-12)
    assert isinstance(rmse(truth, pred), float)


def test_known_values() -> None:
    # errors 1, -3: rmse sqrt(5), mae 2 (a mean of means or a missing sqrt would differ)
    assert rmse([1.0, 4.0], [2.0, 1.0]) == pytest.approx(np.sqrt(5.0))
    assert mae([1.0, 4.0], [2.0, 1.0]) == pytest.approx(2.0)
    assert rmse([3, 3], [3, 3]) == 0.0


def test_float32_inputs_accumulate_in_float64() -> None:
    truth = np.full(100_000, 3.0, dtype=np.float32)
    pred = truth + np.float32(0.1)
    expected = float(np.float32(0.1) + np.float32(3.0)) - 3.0
    assert rmse(truth, pred) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("metric", [rmse, mae])
def test_shape_mismatch_raises(metric) -> None:
    with pytest.raises(ValueError, match="shape"):
        metric([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("metric", [rmse, mae])
def test_empty_raises(metric) -> None:
    with pytest.raises(ValueError):
        metric([], [])
