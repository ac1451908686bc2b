"""scikit-learn's tooling works on AutoRec (issue 5); scikit-learn is not a dependency."""

from __future__ import annotations

import pytest

from autorec import AutoRec

sklearn_utils = pytest.importorskip("sklearn.utils")


def test_tags() -> None:
    tags = sklearn_utils.get_tags(AutoRec())
    assert tags.requires_fit and not tags.target_tags.required
    assert tags.non_deterministic  # no seed given
    assert not sklearn_utils.get_tags(AutoRec(random_state=0)).non_deterministic


def test_html_repr(low_rank) -> None:
    html = sklearn_utils.estimator_html_repr(AutoRec(hidden=8))
    assert "AutoRec" in html and "hidden" in html
    assert AutoRec()._repr_html_() is not None


def test_is_fitted(low_rank) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    model = AutoRec(hidden=4, epochs=1, device="cpu", random_state=0)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    check_is_fitted(model.fit(low_rank))
