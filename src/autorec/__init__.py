"""autorec: AutoRec autoencoders for explicit rating prediction, trained with sparse kernels.

The pipeline, module by module: :mod:`autorec.data` (load) -> :mod:`autorec.split` ->
:mod:`autorec.model` and :mod:`autorec.sparse` (the network and its kernels) ->
:mod:`autorec.train` -> :mod:`autorec.metrics` -> :mod:`autorec.estimator` (fit / predict /
evaluate on raw ids) -> :mod:`autorec.cli`.
"""

import logging

from .data import IdMap, Ratings, from_dataframe, load_dataset, read_ratings
from .estimator import AutoRec
from .exceptions import AutorecError, DataError, DatasetUnavailableError, NotFittedError
from .metrics import mae, rmse
from .split import align, canonical_split, kfold_split, random_split

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AutoRec",
    "AutorecError",
    "DataError",
    "DatasetUnavailableError",
    "IdMap",
    "NotFittedError",
    "Ratings",
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
