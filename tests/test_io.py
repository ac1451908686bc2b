"""Atomic output files (issue 5): permissions follow the umask, errors name the path."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from autorec._io import atomic_write, current_umask, json_ready


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_the_umask(tmp_path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write(tmp_path / "sub" / "f.txt", lambda handle: handle.write("hi\n"))
    finally:
        os.umask(previous)
    path = tmp_path / "sub" / "f.txt"
    assert path.read_text() == "hi\n"
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_binary_and_replace(tmp_path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    atomic_write(path, lambda handle: handle.write(b"\x00new"), binary=True)
    assert path.read_bytes() == b"\x00new"


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write(path, lambda handle: handle.write("new"))
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]

    def broken(handle) -> None:
        raise RuntimeError("boom")

    monkeypatch.undo()
    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_json_ready_gives_plain_json_values() -> None:
    """One cleaner for metrics.json, model.json and the server's responses: numpy values made
    Python's, tuples lists, paths and keys text, NaN and infinities null."""
    import numpy as np

    value = {"a": (np.float32(1.5), np.arange(2)), 3: float("nan"), "p": Path("x") / "y",
             np.int64(4): [float("inf"), True, None, "s"]}
    assert json_ready(value) == {"a": [1.5, [0, 1]], "3": None, "p": str(Path("x") / "y"),
                                 "4": [None, True, None, "s"]}


def test_a_folder_replaced_by_a_file_during_the_run_is_named(tmp_path: Path) -> None:
    """`--out G` checked at the start, then G replaced by a file before the outputs were
    written: 'cannot write G/metrics.json: File exists' (as if metrics.json existed)."""
    folder = tmp_path / "G"
    folder.write_text("x")
    with pytest.raises(OSError) as caught:
        atomic_write(folder / "metrics.json", lambda handle: handle.write("{}"))
    assert str(caught.value).endswith(f"cannot write {folder / 'metrics.json'}: {folder} is "
                                      "not a folder")
    assert folder.read_text() == "x"


def test_a_quoted_error_is_cut_at_a_word() -> None:
    """gloo's message was cut mid-word in the CLI's line: '... for recv operat)'."""
    from autorec.exceptions import first_line

    message = RuntimeError("Timed out waiting 5000ms for recv operation to complete\nmore")
    assert first_line(message, 40) == "Timed out waiting 5000ms for recv..."
    assert len(first_line(message, 40)) <= 40
    assert first_line(RuntimeError("x" * 50), 10) == "xxxxxxx..."
    assert first_line(message) == "Timed out waiting 5000ms for recv operation to complete"
    assert first_line(RuntimeError("")) == "RuntimeError"
