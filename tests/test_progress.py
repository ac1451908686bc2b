"""Progress display: plain lines off a terminal, a bar on one, nothing when quiet."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import pytest

from autorec.progress import EpochProgress, LoadBar, epoch_line, progress_mode


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_forced_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOREC_PROGRESS", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("TERM", "xterm")


def entry(epoch: int, member: int = 1, **extra: Any) -> dict[str, Any]:
    return {"member": member, "epoch": epoch, "train_loss": 0.5 / epoch, "seconds": 0.25,
            **extra}


def test_mode_follows_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress_mode(io.StringIO()) == "lines"
    assert progress_mode(FakeTerminal()) == "bar"
    assert progress_mode(FakeTerminal(), quiet=True) == "off"
    monkeypatch.setenv("TERM", "dumb")
    assert progress_mode(FakeTerminal()) == "lines"
    monkeypatch.setenv("AUTOREC_PROGRESS", "off")
    assert progress_mode(io.StringIO()) == "off"
    monkeypatch.setenv("AUTOREC_PROGRESS", "bar")
    assert progress_mode(io.StringIO()) == "bar"
    monkeypatch.delenv("AUTOREC_PROGRESS")
    monkeypatch.setenv("RANK", "1")  # another process of a data-parallel run
    assert progress_mode(FakeTerminal()) == "off"
    monkeypatch.setenv("AUTOREC_PROGRESS", "bar")  # forced: still rank 0's alone (every
    assert progress_mode(FakeTerminal()) == "off"  # rank drew its bars)
    monkeypatch.delenv("AUTOREC_PROGRESS")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setenv("RANK", "0")
    assert progress_mode(closed) == "lines"


def test_plain_lines_when_not_a_terminal() -> None:
    err, out = io.StringIO(), io.StringIO()
    with EpochProgress(2, stream=err, out=out) as show:
        assert show.mode == "lines"
        show(entry(1, eval_rmse=0.91234))
        show.batch(1, 3)
        show(entry(2))
    assert out.getvalue().splitlines() == [
        "epoch   1/2  train loss 0.5000  test RMSE 0.9123  0.25s",
        "epoch   2/2  train loss 0.2500  0.25s"]
    assert err.getvalue() == ""  # no bar, no carriage return, no escape sequence


def test_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    err, out = FakeTerminal(), io.StringIO()
    with EpochProgress(2, quiet=True, stream=err, out=out) as show:
        assert show.mode == "off"
        show.batch(1, 2)
        show(entry(1))
        show(entry(2))
    load = LoadBar(stream=err, quiet=True)
    load(Report("reading", 100, 10))
    load(Report("done", 1000, 100))
    assert err.getvalue() == "" and out.getvalue() == ""
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bar_on_a_terminal() -> None:
    err, out = FakeTerminal(), io.StringIO()
    with EpochProgress(3, stream=err, out=out) as show:
        assert show.mode == "bar"
        show.batch(1, 2)
        show.batch(2, 2)
        show(entry(1, eval_rmse=0.5))
    shown = err.getvalue()
    assert "training" in shown and "epoch" in shown and "\r" in shown
    assert out.getvalue() == "epoch   1/3  train loss 0.5000  test RMSE 0.5000  0.25s\n"


def test_epoch_progress_lines() -> None:
    err, out = io.StringIO(), io.StringIO()
    with EpochProgress(3, networks=2, label="fold-1: ", stream=err, out=out) as show:
        for member in (1, 2):
            for epoch in (1, 2):
                show(entry(epoch, member, validation_rmse=0.95, eval_rmse=0.97))
    lines = out.getvalue().splitlines()
    assert lines == [epoch_line(entry(e, m, validation_rmse=0.95, eval_rmse=0.97), 3,
                                networks=2, label="fold-1: ")
                     for m in (1, 2) for e in (1, 2)]
    assert lines[0] == ("fold-1: network 1/2 epoch   1/3  train loss 0.5000  validation RMSE "
                        "0.9500  test RMSE 0.9700  0.25s")
    assert err.getvalue() == ""  # early stopping at 2 of 3 epochs: no status lines either


def test_epoch_line_without_validation_or_test() -> None:
    assert epoch_line(entry(4), 25) == "epoch   4/25  train loss 0.1250  0.25s"


def test_default_streams_are_the_process_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with EpochProgress(1) as show:  # pytest's captured streams are not terminals
        show(entry(1))
    captured = capsys.readouterr()
    assert captured.out == "epoch   1/1  train loss 0.5000  0.25s\n"
    assert captured.err == ""


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        EpochProgress(2, mode="fancy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        LoadBar(mode="fancy")  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_bar_on_a_real_pseudo_terminal() -> None:
    import fcntl
    import select
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(slave, "w") as stream:
        out = io.StringIO()
        with EpochProgress(2, stream=stream, out=out) as show:
            show(entry(1, eval_rmse=0.9))
            show(entry(2, eval_rmse=0.8))
        stream.flush()
        shown = b""
        while select.select([master], [], [], 0.5)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            shown += chunk
    os.close(master)
    assert b"training" in shown and b"\r" in shown
    assert out.getvalue().count("\n") == 2


class Report:
    """What the block reader hands its ``progress`` callback (autorec.data.LoadProgress)."""

    def __init__(self, stage: str, bytes_read: int, rows: int) -> None:
        self.source, self.stage, self.bytes_read, self.bytes_total = "/d/big.csv", stage, \
            bytes_read, 1000
        self.rows, self.seconds = rows, 1.0

    def __str__(self) -> str:
        return f"big.csv: {self.stage} {self.bytes_read}/{self.bytes_total}, {self.rows} ratings"


def test_load_bar_lines_and_quiet() -> None:
    err = io.StringIO()
    show = LoadBar(stream=err, interval=3600)
    for k in range(1, 11):
        show(Report("reading", 100 * k, 10 * k))
    show(Report("indexing", 1000, 100))
    show(Report("done", 1000, 100))
    assert err.getvalue().splitlines() == [
        "big.csv: reading 100/1000, 10 ratings",  # the first, then none for an hour
        "big.csv: indexing 1000/1000, 100 ratings",
        "big.csv: done 1000/1000, 100 ratings"]
    err = FakeTerminal()
    quiet = LoadBar(stream=err, quiet=True)
    quiet(Report("reading", 100, 10))
    quiet(Report("done", 1000, 100))
    assert err.getvalue() == ""


def test_load_bar_on_a_terminal() -> None:
    err = FakeTerminal()
    show = LoadBar(stream=err)
    assert show.mode == "bar"
    show(Report("reading", 500, 50))
    show(Report("reading", 1000, 100))
    show(Report("done", 1000, 100))
    shown = err.getvalue()
    assert "big.csv" in shown and "\r" in shown
    assert shown.endswith("big.csv: done 1000/1000, 100 ratings\n")


def test_fit_reports_batches_and_long_epochs_print_where_they_are(low_rank, monkeypatch) -> None:
    from autorec import AutoRec

    calls: list[tuple[int, int]] = []
    AutoRec(hidden=4, epochs=2, batch_size=8, validation=0.0, random_state=0,
            device="cpu").fit(low_rank, on_batch_end=lambda done, total: calls.append(
                (done, total)))
    n_batches = -(-30 // 8)  # 30 item rows (I-AutoRec), 8 a batch
    assert calls == [(k, n_batches) for k in range(1, n_batches + 1)] * 2

    out, err = io.StringIO(), io.StringIO()
    show = EpochProgress(3, mode="lines", out=out, stream=err)
    show.batch(1, 4)
    assert err.getvalue() == ""  # a short epoch prints nothing between its lines
    monkeypatch.setattr(EpochProgress, "BATCH_LINE_SECONDS", 0.0)
    show.batch(2, 4)
    # on the progress stream (stderr), as the README says, not among the results (stdout)
    assert "2/4 batches of the epoch" in err.getvalue() and out.getvalue() == ""
    quiet = io.StringIO()
    EpochProgress(3, quiet=True, out=quiet).batch(2, 4)
    assert quiet.getvalue() == ""


def test_each_l2_value_tried_is_named_in_its_lines_and_history(capsys, low_rank) -> None:
    """With several l2 values, each printed the same "epoch 1/3 ..." block, nothing said
    which value a block trained or which one was kept, and history had no way to tell."""
    from autorec import AutoRec

    seen: list[dict] = []
    model = AutoRec(hidden=4, epochs=2, l2=[1.0, 10.0], random_state=0, device="cpu",
                    ranking="none").fit(low_rank, on_epoch_end=seen.append)
    assert [entry["l2"] for entry in seen] == [1.0, 1.0, 10.0, 10.0]
    assert {entry["l2"] for entry in model.history_} == {model.l2_}
    assert epoch_line(seen[2], 2).startswith("l2 10 epoch   1/2  train loss")
    assert "l2" not in AutoRec(hidden=4, epochs=1, random_state=0, device="cpu",
                               ranking="none").fit(low_rank).history_[0]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("AUTOREC_PROGRESS", "bogus", "bar, lines, off"),
    ("AUTOREC_KERNELS", "off", "numba, torch"),  # only `torch` turns them off: it kept them on
])
def test_an_unknown_environment_choice_is_refused(capsys, monkeypatch, name, value,
                                                  expected) -> None:
    """AUTOREC_PROGRESS=bogus and AUTOREC_KERNELS=off were ignored without a word."""
    from autorec.cli.main import main

    monkeypatch.setenv(name, value)
    try:
        code = main(["datasets"])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"${name} is {value!r}; expected {expected}" in err


def test_an_unknown_kernels_choice_is_warned_about_by_the_library(monkeypatch) -> None:
    import subprocess
    import sys

    from autorec.cli.main import main

    done = subprocess.run(  # a fresh process: the kernels are looked up once per process
        [sys.executable, "-c", "import logging; logging.basicConfig(); "
         "from autorec import _kernels; print(_kernels._numba() is not None)"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "AUTOREC_KERNELS": "off"})
    assert done.stdout.strip() == "True" and "the compiled kernels stay on" in done.stderr
    for fine in ("torch", "NUMBA", ""):
        monkeypatch.setenv("AUTOREC_KERNELS", fine)
        assert main(["datasets"]) == 0
