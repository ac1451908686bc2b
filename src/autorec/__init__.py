"""autorec: AutoRec autoencoders for explicit rating prediction, trained with sparse kernels.

The modules, floor by floor, are described in ARCHITECTURE.md. ``import autorec`` is cheap:
the names below are imported on first use (numpy, pandas and torch with them), so that the
command line can start, and be interrupted, before the heavy imports.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {name: module for module, names in {
    ".data": ("IdMap", "Ratings", "from_dataframe", "load_dataset", "read_ratings"),
    ".estimator": ("AutoRec", "load_model", "save_model"),
    ".evaluate": ("ranking_report",),
    ".exceptions": ("AutorecError", "DataError", "DatasetUnavailableError", "ModelFileError",
                    "NotFittedError", "ResourceError", "TrainingError"),
    ".metrics": ("mae", "ranking_metrics", "rmse"),
    ".split": ("align", "canonical_split", "kfold_split", "random_split"),
}.items() for name in names}
_SUBMODULES = ("baseline", "checkpoint", "cli", "config", "data", "distributed", "estimator",
               "evaluate", "exceptions", "family", "fitted", "fitting", "foldin", "member",
               "memory", "metrics", "model", "networks", "optim", "params", "persist", "plots",
               "progress", "recommend", "selection", "serve", "sparse", "split", "train",
               "tune")

__all__ = ["AutoRec", "AutorecError", "DataError", "DatasetUnavailableError", "IdMap",
           "ModelFileError", "NotFittedError", "Ratings", "ResourceError", "TrainingError",
           "align", "canonical_split", "from_dataframe", "kfold_split", "load_dataset",
           "load_model", "mae", "random_split", "ranking_metrics", "ranking_report",
           "read_ratings", "rmse", "save_model"]

if TYPE_CHECKING:
    from .data import IdMap, Ratings, from_dataframe, load_dataset, read_ratings
    from .estimator import AutoRec, load_model, save_model
    from .evaluate import ranking_report
    from .exceptions import (
        AutorecError,
        DataError,
        DatasetUnavailableError,
        ModelFileError,
        NotFittedError,
        ResourceError,
        TrainingError,
    )
    from .metrics import mae, ranking_metrics, rmse
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
