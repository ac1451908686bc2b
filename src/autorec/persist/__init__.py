"""Model folders: save a :class:`~autorec.fitted.FittedModel` and load it back, no pickle.

A saved model is a folder of two files:

``model.safetensors``
    Every array, in the `safetensors <https://github.com/huggingface/safetensors>`_ format (a
    JSON header and raw little-endian buffers; nothing in it is executed on load):

    * ``member.K.encoder_weight``, ``member.K.encoder_bias``, ``member.K.decoder_weight`` and,
      when the network has one, ``member.K.decoder_bias``: network ``K``'s weights (``float32``,
      ``n_inputs x hidden`` for the weight matrices);
    * ``member.K.inputs.indptr``, ``member.K.inputs.indices``, ``member.K.inputs.data``: the
      training ratings network ``K`` reconstructs from, as CSR in its orientation (items x
      users for I-AutoRec), divided by its ``scale``;
    * ``biases.user``, ``biases.item`` (``float64``): the baseline's offsets;
    * ``blend`` (``float64``): one weight per network, then the intercept;
    * ``users.ids``, ``items.ids`` (``int64``): the raw ids, when they are integers;
    * ``ranking.*`` (format 3, when the model has a ranking model): its arrays
      (:class:`autorec.ranking.scorer.FittedRanking`: ``ranking.popularity``,
      ``ranking.ease.weights``, ``ranking.ease.items``...).

``model.json``
    Everything else, readable by people and other tools: ``format`` (``"autorec-model"``),
    ``format_version``, the library, torch, numpy and Python versions, the constructor
    ``params``, ``variant``, ``rating_scale``, ``global_mean``, ``cold``, ``baseline``,
    ``bias`` (global mean and penalties), ``l2``, ``validation_rmse``, the id maps (text ids
    as JSON strings; integer ids point at their tensor), each network's ``spec``, ``scale``,
    ``best_epoch`` and ``history``, ``ranking`` (format 3: ``null``, or the ranking model's
    ``family``, ``model`` (components, their input weightings and parameters, blend weights,
    rating scale), ``n_items``, ``report`` (what validation chose) and ``arrays`` (each
    array's shape and dtype)), the model's ``history``, an optional ``dataset`` name,
    ``weights``: the size and SHA-256 of ``model.safetensors``, and ``checksum``: the SHA-256
    of this file's own content (every other key, in the canonical form of
    :func:`info_digest`). Numbers that are not finite (a ``NaN`` validation RMSE without a
    validation part) are written as ``null``, so that the file is standard JSON.

Loading refuses, with one line (:class:`~autorec.exceptions.ModelFileError`) naming the
file and, for a field, the field (``members[0].scale``, ``ranking.model.weights[0]``): a path
that is not a model folder, a missing or truncated file, a ``model.safetensors`` whose
SHA-256 is not the recorded one, an edited ``model.json`` (its ``checksum``), a format
version this autorec does not read, a field missing, of the wrong type, out of range or at
odds with the others, and arrays that do not fit the model or hold ``NaN`` or infinities.
Format versions 1 (before ``checksum``) and 2 (before the ranking model) still load.

Saving never deletes anything but autorec's own model files, and never leaves a part:

* a new folder is written whole as a hidden ``.NAME.*.tmp`` folder beside it and renamed into
  place (a crash leaves at most that hidden folder);
* an existing folder is written into only when it is empty or holds nothing but autorec's
  files: ``model.json`` (of an autorec model), ``model.safetensors`` (whose header says it is
  an autorec model's), ``autorec train --out``'s ``metrics.json`` and autorec's own hidden
  temporary files; anything else is refused and the folder left as it was. Only
  ``model.safetensors`` and then ``model.json`` are replaced, each atomically. Between the two
  renames a reader gets a checksum error, never a mixed model; a failure or Ctrl-C there puts
  the old weights back (kept as a hard link until ``model.json`` is in place). Only a process
  killed in that instant leaves a folder that loading refuses until the model is saved again.
  One save at a time per folder.

A link to a folder is saved into as that folder (links are followed, as for every output).
"""

from .arrays import load_model, save_model
from .fields import info_digest, read_model_info
from .folder import check_save_path
from .names import FORMAT, FORMAT_VERSION, JSON_FILE, READ_VERSIONS, WEIGHTS_FILE

__all__ = ["FORMAT", "FORMAT_VERSION", "JSON_FILE", "READ_VERSIONS", "WEIGHTS_FILE",
           "check_save_path", "info_digest", "load_model", "read_model_info", "save_model"]
