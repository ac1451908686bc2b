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

Cost: after each epoch the network in training and its optimizer state are written (three
times the weights with Adam), plus the best weights when they improved; finished networks
are written once. A network of ``n_inputs x hidden`` float32 weights per matrix writes about
``24 * n_inputs * hidden`` bytes per epoch with Adam (11 MB for ML-100K's I-AutoRec at 500
hidden units, about a tenth of a second on a shared 2-core box with its fsyncs and SHA-256;
gigabytes for Netflix-shaped sets, which is what exact resumption costs).
Networks of every ``l2`` candidate are kept, since resuming replays the choice among them.

Resuming refuses, with one line naming the folder (:class:`CheckpointError`): a manifest that
is unreadable, of another format version, or whose checksum differs; a missing, truncated or
altered file; a checkpoint made with other data or another configuration (the message says
which settings differ). Without ``resume``, a folder that already holds a checkpoint is
refused rather than overwritten; with ``resume`` and no checkpoint, the fit starts from the
beginning (and logs it), so that one command can be rerun until it finishes. One fit at a
time may use a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._io import OutputPathError, atomic_path, atomic_write, check_output_folder
from .exceptions import CheckpointError
from .selection import EarlyStopping, TrainingRun

if TYPE_CHECKING:
    from .data.ratings import Ratings
    from .fitted import FittedModel
    from .train import Trainer

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "CheckpointError", "NetworkCheckpoint",
           "Session", "check_folder", "describe"]

log = logging.getLogger(__name__)

FORMAT = "autorec-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
#: Files of ours that a manifest may name (anything else in the folder is left alone).
_OURS = re.compile(r"(net|initial)-(select|refit)-c\d+-n\d+\.safetensors|"
                   r"(train|best)-\d+\.safetensors|\..*\.safetensors\..*\.tmp|\.ckpt-.*\.tmp|"
                   r"\.checkpoint\.json\..*\.tmp|\.tmp[A-Za-z0-9]{6}")
#: Temporary files a killed writer can leave: ours (``.ckpt-*`` from earlier versions), and
#: safetensors' own (``.tmpXXXXXX``).
_STALE = re.compile(r"\..*\.safetensors\..*\.tmp|\.ckpt-.*\.tmp|\.checkpoint\.json\..*\.tmp|"
                    r"\.tmp[A-Za-z0-9]{6}")
_CHUNK = 1 << 22


# -- fingerprints ------------------------------------------------------------------------------
def _hash_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        if array.dtype == object:  # text ids: unambiguous, separated by NUL
            array = np.frombuffer("\0".join(map(str, array.tolist())).encode(), dtype=np.uint8)
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}:{array.shape}|".encode())
        digest.update(array.view(np.uint8).reshape(-1).data)
    return digest.hexdigest()


def fingerprint(model: FittedModel, ratings: Ratings, eval_set: Ratings | None,
                device: torch.device, context: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint must have been made with to be resumed by this fit.

    ``model`` is the fit in progress (its parameters and id maps set); ``ratings`` are the
    training ratings on ``model.users`` / ``model.items``.
    """
    config = {k: v for k, v in model.params.items() if k != "device"}
    config["device_type"] = device.type
    data = {"n_ratings": len(ratings), "n_users": len(model.users),
            "n_items": len(model.items),
            "sha256": _hash_arrays(ratings.user_idx, ratings.item_idx, ratings.rating,
                                   model.users.raw_ids, model.items.raw_ids)}
    evaluation = None
    if eval_set is not None:
        evaluation = {"n_ratings": len(eval_set), "sha256": _hash_arrays(
            model.users.to_index(eval_set.user_ids), model.items.to_index(eval_set.item_ids),
            eval_set.rating)}
    return _plain({"data": data, "evaluation": evaluation, "config": config,
                   "context": context or {}})


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists, numpy scalars as Python's)."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} in {MANIFEST}")


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first kind of mismatch between two fingerprints, in words, or ``None``."""
    for part, what in (("config", "configuration"), ("context", "options")):
        old, new = saved.get(part) or {}, current[part]
        changed = [f"{key} {_show(old.get(key))} there, {_show(new.get(key))} here"
                   for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        if changed:
            return f"made with another {what}: {'; '.join(changed)}"
    if saved.get("data") != current["data"]:
        old, new = saved.get("data") or {}, current["data"]
        counts = [f"{key} {old.get(key)} there, {new[key]} here" for key in
                  ("n_ratings", "n_users", "n_items") if old.get(key) != new[key]]
        return ("made with other data: the training ratings differ (" +
                ("; ".join(counts) if counts else
                 f"SHA-256 {str(old.get('sha256'))[:12]}... there, {new['sha256'][:12]}... here")
                + ")")
    if saved.get("evaluation") != current["evaluation"]:
        return "made with another evaluation set"
    return None


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


# -- files -------------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of a writer that was killed mid-write (never part of a
    checkpoint: a file is renamed into place only once it is complete)."""
    for path in folder.iterdir():
        if _STALE.fullmatch(path.name) and path.is_file():
            try:
                path.unlink()
            except OSError:
                pass


def _write_tensors(folder: Path, name: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Write ``folder/name`` in full (temporary file, fsync, rename); its size and SHA-256."""
    from safetensors.torch import save_file

    path = folder / name
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp,
                  # one key: safetensors writes its metadata map in a random order
                  metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    return {"name": name, "size": path.stat().st_size, "sha256": _file_digest(path)}


def _read_tensors(folder: Path, info: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(folder / info["name"])
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint in {folder}: {info['name']} is unreadable "
                              f"({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _body_digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} is unreadable "
                              f"({_first_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} is not an autorec "
                              "checkpoint manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint in {folder}: format version "
                              f"{manifest.get('format_version')!r}; this autorec reads "
                              f"{FORMAT_VERSION}")
    recorded = manifest.pop("sha256", None)
    if recorded != _body_digest(manifest):
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} was altered (its checksum "
                              "differs from the one recorded in it)")
    try:
        int(manifest["sequence"])
        for info in _files_of(manifest):
            str(info["name"]), int(info["size"]), str(info["sha256"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} is malformed "
                              f"({_first_line(exc)})") from None
    return manifest


def _files_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    files = [record["file"] for record in manifest["networks"].values()]
    current = manifest.get("current")
    if current is not None:
        files += [info for info in current["files"].values() if info is not None]
    return files


def _verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    for info in _files_of(manifest):
        path = folder / info["name"]
        if not path.is_file():
            raise CheckpointError(f"checkpoint in {folder}: {info['name']} is missing")
        size = path.stat().st_size
        if size != info["size"]:
            raise CheckpointError(f"checkpoint in {folder}: {info['name']} is truncated or "
                                  f"altered ({size} bytes; the manifest records {info['size']})")
        if _file_digest(path) != info["sha256"]:
            raise CheckpointError(f"checkpoint in {folder}: {info['name']} is corrupted or "
                                  "altered (its SHA-256 differs from the one recorded)")


def describe(folder: str | os.PathLike[str]) -> str | None:
    """Where the checkpoint in ``folder`` stands, in words (``None``: no checkpoint there).
    Reads only the manifest; :meth:`Session.open` does the checking."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return None
    try:
        return str(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["position"])
    except (OSError, ValueError, KeyError, TypeError):
        return "an unreadable checkpoint"


def check_folder(folder: str | os.PathLike[str], *, resume: bool) -> None:
    """Fail early when ``folder`` cannot take checkpoints: it is not a folder, sits under a
    file, cannot be written (:func:`autorec._io.check_output_folder`), or (without
    ``resume``) it, or a ``fold-K`` folder in it, already holds a checkpoint."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} exists and is not a folder")
    try:
        check_output_folder(folder)
    except OutputPathError as exc:
        raise CheckpointError(f"checkpoint folder: {exc}") from None
    if not resume and folder.is_dir():
        for manifest in [folder / MANIFEST, *sorted(folder.glob(f"fold-*/{MANIFEST}"))]:
            if manifest.is_file():
                where = describe(manifest.parent)
                raise CheckpointError(
                    f"{manifest.parent} already holds a checkpoint ({where}); resume it "
                    "(--resume, resume=True) or give another checkpoint folder")


# -- the session -------------------------------------------------------------------------------
class Session:
    """The checkpoints of one fit in one folder; hands out a :class:`NetworkCheckpoint` per
    network, in the order the fit trains them. Use :meth:`open`."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any],
                 manifest: dict[str, Any] | None) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.resumed = manifest is not None
        self.networks: dict[str, dict[str, Any]] = dict(manifest["networks"]) if manifest else {}
        self.pending: dict[str, Any] | None = manifest.get("current") if manifest else None
        self.sequence = int(manifest["sequence"]) if manifest else 0

    @classmethod
    def open(cls, folder: str | os.PathLike[str], model: FittedModel, ratings: Ratings, *,
             eval_set: Ratings | None, device: torch.device, resume: bool,
             context: dict[str, Any] | None = None) -> Session:
        """Start checkpointing in ``folder``, or (``resume``) continue its checkpoint after
        checking it (module docstring). ``model`` is the fit in progress (its parameters
        and id maps set) and ``ratings`` are on its id maps."""
        if model.params["random_state"] is None:
            raise ValueError("checkpoint_dir needs an integer random_state: resuming replays "
                             "the seeded validation split, initial weights and shuffling")
        folder = Path(folder)
        check_folder(folder, resume=resume)
        current = fingerprint(model, ratings, eval_set, device, context)
        if not (folder / MANIFEST).is_file():
            if resume:
                log.warning("no checkpoint in %s: training from the beginning", folder)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write {folder}: {exc.strerror or exc}"
                              ) from exc
            return cls(folder, current, None)
        manifest = _read_manifest(folder)
        problem = _differences(manifest.get("fingerprint") or {}, current)
        if problem is not None:
            raise CheckpointError(f"checkpoint in {folder}: {problem}; resume with the same "
                                  "data and settings, or give another checkpoint folder")
        _verify_files(folder, manifest)
        _remove_stale_temporaries(folder)
        log.info("resuming from the checkpoint in %s: %s", folder, manifest.get("position"))
        return cls(folder, current, manifest)

    def network(self, phase: str, candidate: int, member: int) -> NetworkCheckpoint:
        """The checkpoint of network ``member`` (0-based) of ``l2`` candidate ``candidate``
        (0-based) in ``phase`` (``select`` or ``refit``)."""
        tag = f"{phase}-c{candidate + 1}-n{member + 1}"
        if tag in self.networks:
            return NetworkCheckpoint(self, tag, finished=self.networks[tag])
        pending, self.pending = self.pending, None
        if pending is not None and pending["network"] != tag:
            raise CheckpointError(f"checkpoint in {self.folder}: it stopped in network "
                                  f"{pending['network']}, which this fit does not reach before "
                                  f"{tag}; it was not made by this fit")
        return NetworkCheckpoint(self, tag, interrupted=pending)

    def finish(self) -> None:
        """Mark the checkpoint complete (the finished networks stay)."""
        self.commit(None, "complete: every network trained", complete=True)

    def commit(self, current: dict[str, Any] | None, position: str, *,
               complete: bool = False) -> None:
        """Write a new manifest naming ``current`` and the finished networks, then delete the
        files that the previous one named and this one does not."""
        self.sequence += 1
        body = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sequence": self.sequence,
            "complete": complete, "position": position,
            "autorec": _version(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": self.fingerprint, "networks": self.networks, "current": current,
        }
        body = _plain(body)
        text = json.dumps({**body, "sha256": _body_digest(body)}, indent=1)
        atomic_write(self.folder / MANIFEST, lambda handle: handle.write(text + "\n"))
        keep = {MANIFEST, *(info["name"] for info in _files_of(body))}
        for path in self.folder.iterdir():
            if path.name not in keep and _OURS.fullmatch(path.name):
                with contextlib.suppress(OSError):
                    path.unlink()

    def next_name(self, kind: str) -> str:
        return f"{kind}-{self.sequence + 1:06d}.safetensors"


def _version() -> str:
    from . import __version__

    return str(__version__)


class NetworkCheckpoint:
    """One network's part of a :class:`Session`, driven by
    :func:`autorec.selection.train_with_early_stopping`: it restores a network that had
    finished or was interrupted, saves the state after every epoch, and records the network
    when it finishes."""

    def __init__(self, session: Session, tag: str, *, finished: dict[str, Any] | None = None,
                 interrupted: dict[str, Any] | None = None) -> None:
        self.session = session
        self.tag = tag
        self.finished = finished
        self.interrupted = interrupted
        files = interrupted["files"] if interrupted else {}
        self._initial = files.get("initial")
        self._best = files.get("best")
        self._best_epoch = interrupted["best_epoch"] if interrupted else None

    @property
    def label(self) -> str:
        phase, candidate, member = self.tag.split("-")
        where = f"l2 value {candidate[1:]}" if phase == "select" else "refit"
        return f"{where}, network {member[1:]}"

    # -- restoring
    def restore_finished(self, net: torch.nn.Module) -> TrainingRun:
        """Put the finished network's weights into ``net``; what its training did."""
        assert self.finished is not None
        record = self.finished
        _load_net(net, _read_tensors(self.session.folder, record["file"]), self.session.folder)
        return TrainingRun(list(record["history"]), int(record["best_epoch"]),
                           float(record["best_score"]))

    def restore(self, trainer: Trainer, stopper: EarlyStopping, initial: EarlyStopping
                ) -> tuple[list[dict[str, Any]], bool]:
        """Put the interrupted network's state into ``trainer`` and the two early stoppers;
        its history so far and whether it was to stop."""
        assert self.interrupted is not None
        record, folder = self.interrupted, self.session.folder
        tensors = _read_tensors(folder, record["files"]["train"])
        _load_net(trainer.net, tensors, folder)
        if len(record["optimizers"]) != len(trainer.optimizers):
            raise CheckpointError(f"checkpoint in {folder}: {len(record['optimizers'])} "
                                  f"optimizers saved, {len(trainer.optimizers)} here")
        try:
            for optimizer, saved in zip(trainer.optimizers, record["optimizers"], strict=True):
                state_dict = optimizer.state_dict()
                state_dict["state"] = {
                    int(param): {key: (tensors[value["tensor"]] if isinstance(value, dict)
                                       else value) for key, value in entry.items()}
                    for param, entry in saved.items()}
                optimizer.load_state_dict(state_dict)
            trainer.generator.set_state(tensors["dropout_generator"])
            trainer.rng.bit_generator.state = record["numpy_rng"]
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"checkpoint in {folder}: the training state does not fit "
                                  f"this network ({_first_line(exc)})") from None
        trainer.epoch = int(record["epoch"])
        device = next(trainer.net.parameters()).device
        for target, score, best_epoch, info in (
                (stopper, record["best_score"], record["best_epoch"], self._best),
                (initial, record["initial_score"], 0, self._initial)):
            target.best_score, target.best_epoch = float(score), int(best_epoch)
            if info is not None:
                target.best_state = {name[4:]: value.to(device) for name, value in
                                     _read_tensors(folder, info).items()}
        return list(record["history"]), bool(record["stop"])

    # -- saving
    def save(self, trainer: Trainer, stopper: EarlyStopping, initial: EarlyStopping,
             history: list[dict[str, Any]], stop: bool) -> None:
        """Checkpoint the state after an epoch (module docstring)."""
        session = self.session
        folder = session.folder
        tensors = {f"net.{name}": value for name, value in trainer.net.state_dict().items()}
        optimizers = []
        for i, optimizer in enumerate(trainer.optimizers):
            saved: dict[str, dict[str, Any]] = {}
            for param, entry in optimizer.state_dict()["state"].items():
                saved[str(param)] = {}
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor):
                        name = f"optimizer.{i}.{param}.{key}"
                        tensors[name] = value
                        saved[str(param)][key] = {"tensor": name}
                    else:
                        saved[str(param)][key] = value
            optimizers.append(saved)
        tensors["dropout_generator"] = trainer.generator.get_state()
        files = {"train": _write_tensors(folder, session.next_name("train"), tensors)}
        initial_state, best_state = initial.state(), stopper.state()
        if initial_state is not None and self._initial is None:
            self._initial = _write_tensors(folder, f"initial-{self.tag}.safetensors",
                                           _net_tensors(initial_state))
        if best_state is not None and stopper.best_epoch != self._best_epoch:
            self._best = _write_tensors(folder, session.next_name("best"),
                                        _net_tensors(best_state))
            self._best_epoch = stopper.best_epoch
        files.update(initial=self._initial, best=self._best)
        current = {
            "network": self.tag, "epoch": trainer.epoch, "stop": stop, "history": history,
            "numpy_rng": trainer.rng.bit_generator.state, "optimizers": optimizers,
            "best_score": stopper.best_score, "best_epoch": stopper.best_epoch,
            "initial_score": initial.best_score, "files": files,
        }
        session.commit(current, f"{self.label}, epoch {trainer.epoch}")

    def finish(self, net: torch.nn.Module, run: TrainingRun) -> None:
        """Record the finished network (its kept weights and what its training did)."""
        session = self.session
        info = _write_tensors(session.folder, f"net-{self.tag}.safetensors",
                              _net_tensors(net.state_dict()))
        session.networks[self.tag] = {"file": info, "best_epoch": run.best_epoch,
                                      "best_score": run.best_score, "history": run.history}
        session.commit(None, f"{self.label} finished")


def _net_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"net.{name}": value for name, value in state.items()}


def _load_net(net: torch.nn.Module, tensors: dict[str, torch.Tensor], folder: Path) -> None:
    state = {name[4:]: value for name, value in tensors.items() if name.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint in {folder}: its weights do not fit this network "
                              f"({_first_line(exc)})") from None
