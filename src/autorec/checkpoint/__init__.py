"""Checkpoints written after every epoch, and a resumed fit that ends exactly where an
uninterrupted one would.

``AutoRec.fit(ratings, checkpoint_dir=DIR)`` (``autorec train --checkpoint-dir DIR``) saves
after every epoch everything that the rest of the fit depends on; ``resume=True``
(``--resume``) replays the fit from the beginning, taking each network that had finished from
the checkpoint instead of training it, and continues the interrupted one from its last epoch.
Every step that is not saved (the validation carve-out, the bias penalties, the blend, the
choice of ``l2``) is deterministic given the seed and is recomputed, so on the same device
(and the same number of CPU threads) the resumed fit is bitwise the uninterrupted one.

A checkpoint folder holds:

``checkpoint.json``
    The manifest, rewritten atomically after every epoch; it is the commit point. It records
    the format and versions; the ``fingerprint`` of the data (SHA-256 of the training ratings'
    indices and ratings and of both id maps; of the evaluation set's too) and of the
    configuration (every estimator parameter but ``device``, the device type, and the
    caller's ``context``, for the command line its split options); ``position`` (where the
    fit is, in words); ``networks``: each finished network's file, best epoch and score and
    history; ``current``: the network in training (its epoch, whether early stopping has
    decided to stop, its history, the numpy shuffling generator's state, the optimizers'
    scalar state, the early-stopping scores and best epoch, and its files); ``complete``; and
    ``sha256``, over the rest of the manifest. Every file it names comes with its size and
    SHA-256.
``net-<phase>-c<candidate>-n<network>.safetensors``
    A finished network's weights (the best epoch's), written once when it finishes. ``phase``
    is ``select`` (training with validation; ``candidate``: the 1-based position in the
    ``l2`` list) or ``refit`` (candidate 1); ``network``: 1-based, as in ``history_``.
``train-<sequence>.safetensors``
    The network in training, rewritten every epoch: ``net.*`` (its weights now),
    ``optimizer.<i>.<param>.<key>`` (Adam / LazyAdam / Rprop state tensors) and
    ``dropout_generator`` (the torch generator's state, ``uint8``).
``best-<sequence>.safetensors``, ``initial-...safetensors``
    The best epoch's weights so far (rewritten when they improve) and the untrained weights
    (the epoch-0 fallback, written once per network).

Every file is written in full (a temporary file, flushed to disk, renamed) before the manifest
that names it replaces the previous one; a file a manifest names is never rewritten (the
per-epoch files get the manifest's new sequence number), and files the new manifest no
longer names are deleted only after it is in place: a process killed at any moment leaves
the last complete checkpoint. When the fit ends, the manifest is marked ``complete`` and the
finished networks stay, so that resuming a finished fit restores every network and gives the
same model without training.

Cost: after each epoch the network in training and its optimizer state (about
``24 * n_inputs * hidden`` bytes with Adam), plus the best weights when they improved;
finished networks, of every ``l2`` candidate (resuming replays the choice among them), once.

Resuming refuses, with one line naming the folder (:class:`CheckpointError`): a manifest that
is unreadable, of another format version, or whose checksum differs; a missing, truncated or
altered file; a checkpoint made with other data or another configuration (the message says
which settings differ). Without ``resume``, a folder that already holds a checkpoint is
refused rather than overwritten; with ``resume`` and no checkpoint, the fit starts from the
beginning (and logs it), so that one command can be rerun until it finishes. One fit at a
time may use a folder.
"""

from ..exceptions import CheckpointError
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, check_folder, describe
from .session import NetworkCheckpoint, Session

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "CheckpointError", "NetworkCheckpoint",
           "Session", "check_folder", "describe"]
