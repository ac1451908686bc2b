"""Resume logic (:mod:`autorec.checkpoint`): a :class:`Session` per fit hands out a
:class:`NetworkCheckpoint` per network, which restores a finished or interrupted network and
saves the training state after every epoch."""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..exceptions import CheckpointError, first_line
from ..selection import EarlyStopping, TrainingRun
from .manifest import (
    MANIFEST,
    check_folder,
    differences,
    fingerprint,
    read_manifest,
    read_tensors,
    remove_stale_temporaries,
    verify_files,
    write_manifest,
    write_tensors,
)

if TYPE_CHECKING:
    from ..data.ratings import Ratings
    from ..fitted import FittedModel
    from ..train import Trainer

log = logging.getLogger(__name__)


class Session:
    """The checkpoints of one fit in one folder; hands out a :class:`NetworkCheckpoint` per
    network, in the order the fit trains them. Use :meth:`open`."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any],
                 manifest: dict[str, Any] | None, held: str | None = None) -> None:
        self.folder = folder
        # the folder's lock (:func:`_hold`) ends with the fit, or with the session
        self.release = (weakref.finalize(self, _let_go, held) if held is not None
                        else lambda: None)
        self.fingerprint = fingerprint
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
                # documented (``resume``: with none there, start from the beginning), so not a
                # warning; the command line says it in its own words
                log.info("no checkpoint in %s: training from the beginning", folder)
            try:
                # a link to a folder not made yet: made where it points, as --save does
                Path(os.path.realpath(folder)).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write {folder}: {exc.strerror or exc}"
                              ) from exc
            return cls(folder, current, None, _hold(folder))
        held = _hold(folder)
        try:
            manifest = read_manifest(folder)
            problem = differences(manifest.get("fingerprint") or {}, current)
            if problem is not None:
                raise CheckpointError(f"checkpoint in {folder}: {problem}; resume with the "
                                      "same data and settings, or give another checkpoint "
                                      "folder")
            verify_files(folder, manifest)
            remove_stale_temporaries(folder)
        except BaseException:
            _let_go(held)
            raise
        log.info("resuming from the checkpoint in %s: %s", folder, manifest.get("position"))
        return cls(folder, current, manifest, held)

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
        """Mark the checkpoint complete (the finished networks stay) and let go of the
        folder."""
        self.commit(None, "complete: every network trained", complete=True)
        self.release()

    def commit(self, current: dict[str, Any] | None, position: str, *,
               complete: bool = False) -> None:
        """Write a new manifest naming ``current`` and the finished networks, then delete the
        files that the previous one named and this one does not."""
        self.sequence += 1
        write_manifest(self.folder, sequence=self.sequence, complete=complete,
                       position=position, fingerprint=self.fingerprint,
                       networks=self.networks, current=current)

    def next_name(self, kind: str) -> str:
        return f"{kind}-{self.sequence + 1:06d}.safetensors"


#: The checkpoint folders this process holds: real path -> the locked descriptor (a fit lets
#: go of its folder when it ends, by an exception too: :func:`autorec.fitting.fit`).
_HELD: dict[str, int] = {}


def _hold(folder: Path) -> str | None:
    """An exclusive lock on ``folder`` for this process's fit (a ``flock``, given back by
    :func:`_let_go` or at the process's end); ``None`` where the system has none. Two fits on
    one folder overwrote each other's files and failed with a missing one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    key = os.path.realpath(folder)
    if key in _HELD:  # a fit of this process, in another thread
        raise _in_use(folder, "thread")
    held = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(held)
        raise _in_use(folder, "process") from None
    _HELD[key] = held
    return key


def _in_use(folder: Path, other: str) -> CheckpointError:
    return CheckpointError(f"checkpoint folder {folder} is in use by another fit (another "
                           f"{other} trains into it): wait for it to end, or give another "
                           "folder")


def _let_go(key: str | None) -> None:
    """Give back the folder :func:`_hold` returned ``key`` for."""
    held = _HELD.pop(key, None) if key is not None else None
    if held is not None:
        os.close(held)


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
        _load_net(net, read_tensors(self.session.folder, record["file"]), self.session.folder)
        return TrainingRun(list(record["history"]), int(record["best_epoch"]),
                           float(record["best_score"]))

    def restore(self, trainer: Trainer, stopper: EarlyStopping, initial: EarlyStopping
                ) -> tuple[list[dict[str, Any]], bool]:
        """Put the interrupted network's state into ``trainer`` and the two early stoppers;
        its history so far and whether it was to stop."""
        assert self.interrupted is not None
        record, folder = self.interrupted, self.session.folder
        tensors = read_tensors(folder, record["files"]["train"])
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
                                  f"this network ({first_line(exc, 200)})") from None
        trainer.epoch = int(record["epoch"])
        device = next(trainer.net.parameters()).device
        for target, score, best_epoch, info in (
                (stopper, record["best_score"], record["best_epoch"], self._best),
                (initial, record["initial_score"], 0, self._initial)):
            target.best_score, target.best_epoch = float(score), int(best_epoch)
            if info is not None:
                target.best_state = {name[4:]: value.to(device) for name, value in
                                     read_tensors(folder, info).items()}
        return list(record["history"]), bool(record["stop"])

    # -- saving
    def save(self, trainer: Trainer, stopper: EarlyStopping, initial: EarlyStopping,
             history: list[dict[str, Any]], stop: bool) -> None:
        """Checkpoint the state after an epoch (module docstring)."""
        session = self.session
        folder = session.folder
        tensors = _net_tensors(trainer.net.state_dict())

        def stored(name: str, value: Any) -> Any:  # a tensor goes to the file, by its name
            if not isinstance(value, torch.Tensor):
                return value
            tensors[name] = value
            return {"tensor": name}

        optimizers = [{str(param): {key: stored(f"optimizer.{i}.{param}.{key}", value)
                                    for key, value in entry.items()}
                       for param, entry in optimizer.state_dict()["state"].items()}
                      for i, optimizer in enumerate(trainer.optimizers)]
        tensors["dropout_generator"] = trainer.generator.get_state()
        files = {"train": write_tensors(folder, session.next_name("train"), tensors)}
        initial_state = initial.state() if self._initial is None else None
        if initial_state is not None:
            self._initial = write_tensors(folder, f"initial-{self.tag}.safetensors",
                                           _net_tensors(initial_state))
        # read only when it changed: a large copy is held in a file (autorec.selection)
        best_state = stopper.state() if stopper.best_epoch != self._best_epoch else None
        if best_state is not None:
            self._best = write_tensors(folder, session.next_name("best"),
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
        info = write_tensors(session.folder, f"net-{self.tag}.safetensors",
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
                              f"({first_line(exc, 200)})") from None
