"""Loading ratings: id maps, the ratings container, file readers and builtin data sets."""

from .builtin import DATASETS, dataset_path, load_dataset
from .ids import IdMap
from .items import ItemTitles, dataset_item_titles, read_item_titles
from .ratings import Orientation, Ratings
from .readers import DEFAULT_COLUMNS, DuplicatePolicy, LoadProgress, from_dataframe, read_ratings

__all__ = [
    "DATASETS",
    "DEFAULT_COLUMNS",
    "DuplicatePolicy",
    "IdMap",
    "ItemTitles",
    "LoadProgress",
    "Orientation",
    "Ratings",
    "dataset_item_titles",
    "dataset_path",
    "from_dataframe",
    "load_dataset",
    "read_item_titles",
    "read_ratings",
]
