"""The names of a model folder's format: its files, its format name and versions."""

import re

__all__ = ["FORMAT", "FORMAT_VERSION", "JSON_FILE", "METRICS_FILE", "READ_VERSIONS",
           "WEIGHTS_FILE"]

FORMAT = "autorec-model"
#: The version this autorec writes. Raise it whenever a change makes old readers misread new
#: files (a new required key, a renamed tensor). Version 2 added ``checksum`` to model.json;
#: version 3 the ranking model (``ranking`` in model.json, ``ranking.*`` arrays).
FORMAT_VERSION = 3
#: The versions this autorec reads (1 and 2 load without a ranking model).
READ_VERSIONS = (1, 2, 3)
WEIGHTS_FILE = "model.safetensors"
JSON_FILE = "model.json"
#: ``autorec train --out`` writes it; it may share a model folder (its name cannot collide).
METRICS_FILE = "metrics.json"
#: autorec's temporary files in a model folder: ``atomic_path``'s ``.NAME.XXXXXXXX.tmp`` and
#: the weights kept while ``model.json`` is switched (``.NAME.XXXXXXXX.old``).
_TEMPORARY = re.compile(r"\.(model\.json|model\.safetensors|metrics\.json)\.[a-z0-9_]+\."
                        r"(tmp|old)")

