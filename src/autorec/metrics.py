"""Rating-prediction metrics as plain functions.

RMSE and MAE are taken over all test ratings pooled together (not averaged per user).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["mae", "rmse"]


def _errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {true.shape} vs {pred.shape}")
    if true.size == 0:
        raise ValueError("cannot score zero ratings")
    return pred - true


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error, ``sqrt(mean((y_pred - y_true)**2))``."""
    return float(np.sqrt(np.mean(np.square(_errors(y_true, y_pred)))))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error, ``mean(|y_pred - y_true|)``."""
    return float(np.mean(np.abs(_errors(y_true, y_pred))))
