"""autorec: AutoRec autoencoders for explicit rating prediction, trained with sparse kernels.

The pipeline, module by module: :mod:`autorec.data` (load) -> :mod:`autorec.split` ->
:mod:`autorec.model` and :mod:`autorec.sparse` (the network and its kernels) ->
:mod:`autorec.train` -> :mod:`autorec.metrics` -> :mod:`autorec.estimator` (fit / predict /
evaluate on raw ids) -> :mod:`autorec.cli`.

``import autorec`` is cheap: the names below are imported on first use (numpy, pandas and
torch with them), so that the command line can start, and be interrupted, before the heavy
imports.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AutoRec": ".estimator",
    "AutorecError": ".exceptions",
    "DataError": ".exceptions",
    "DatasetUnavailableError": ".exceptions",
    "IdMap": ".data",
    "NotFittedError": ".exceptions",
    "Ratings": ".data",
    "ResourceError": ".exceptions",
    "TrainingError": ".exceptions",
    "align": ".split",
    "canonical_split": ".split",
    "from_dataframe": ".data",
    "kfold_split": ".split",
    "load_dataset": ".data",
    "mae": ".metrics",
    "random_split": ".split",
    "read_ratings": ".data",
    "rmse": ".metrics",
}
_SUBMODULES = ("baseline", "cli", "data", "estimator", "exceptions", "memory", "metrics", "model",
               "selection", "sparse", "split", "train")

__all__ = [
    "AutoRec",
    "AutorecError",
    "DataError",
    "DatasetUnavailableError",
    "IdMap",
    "NotFittedError",
    "Ratings",
    "ResourceError",
    "TrainingError",
    "align",
    "canonical_split",
    "from_dataframe",
    "kfold_split",
    "load_dataset",
    "mae",
    "random_split",
    "read_ratings",
    "rmse",
]

if TYPE_CHECKING:
    from .data import IdMap, Ratings, from_dataframe, load_dataset, read_ratings
    from .estimator import AutoRec
    from .exceptions import (
        AutorecError,
        DataError,
        DatasetUnavailableError,
        NotFittedError,
        ResourceError,
        TrainingError,
    )
    from .metrics import mae, rmse
    from .split import align, canonical_split, kfold_split, random_split


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
