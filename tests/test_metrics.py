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


def test_ranking_metric_inputs_are_checked_not_truncated() -> None:
    """A float or boolean k and fractional counts were taken as their integer part, and
    ndcg_per_user gave 1.63 for a list repeating a relevant item."""
    from autorec.metrics import ndcg_per_user, ranking_metrics_from_hits

    for k in (2.7, True, 0, -1, np.nan):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            ranking_metrics_from_hits([[1, 0]], [1], k=k)
        with pytest.raises(ValueError, match="k must be a positive integer"):
            ndcg_per_user([[1, 0]], [1], k=k)
    with pytest.raises(ValueError, match="n_relevant must hold counts"):
        ranking_metrics_from_hits([[1, 0]], [1.7], k=2)
    with pytest.raises(ValueError, match="more hits than relevant items"):
        ndcg_per_user([[1, 1]], [1], k=2)
    assert ranking_metrics_from_hits([[1, 0]], [1], k=np.int64(2))["ndcg@2"] == 1.0


def test_confidence_interval_and_summarise_refuse_what_they_cannot_mean() -> None:
    from autorec.evaluate import confidence_interval, summarise

    for level in (95, 1, 0, -0.5):
        with pytest.raises(ValueError, match="level must be strictly between 0 and 1"):
            confidence_interval([0.9, 0.91, 0.95, 0.88], level)
    with pytest.raises(ValueError, match="one-dimensional"):
        confidence_interval([[1, 2], [3, 4]])
    assert all(np.isnan(confidence_interval([])))
    with pytest.raises(ValueError, match="no results"):
        summarise([])
