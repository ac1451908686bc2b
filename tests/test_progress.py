"""Progress display: plain lines off a terminal, a bar on one, nothing when quiet."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import pytest

from autorec.progress import (
    EpochProgress,
    LoadBar,
    Progress,
    epoch_line,
    progress_mode,
    task,
    track,
)


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
    closed = io.StringIO()
    closed.close()
    monkeypatch.setenv("RANK", "0")
    assert progress_mode(closed) == "lines"


def test_plain_lines_when_not_a_terminal() -> None:
    err, out = io.StringIO(), io.StringIO()
    with Progress(4, "loading", unit="chunks", stream=err, out=out, interval=0) as bar:
        assert bar.mode == "lines"
        for _ in range(4):
            bar.update(1, rmse=0.91234)
        bar.write("a line of its own")
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("loading: 1/4 chunks (25%) in ")
    assert lines[0].endswith(", rmse 0.9123")
    assert lines[-1].startswith("loading: 4/4 chunks (100%) in ")
    assert len(lines) == 4  # no repeated last line on close
    assert "\r" not in err.getvalue() and "\x1b" not in err.getvalue()
    assert out.getvalue() == "a line of its own\n"


def test_plain_lines_are_throttled() -> None:
    err = io.StringIO()
    with Progress(1000, "reading", unit="rows", stream=err, interval=3600) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = err.getvalue().splitlines()
    assert len(lines) == 1  # only the last one
    assert lines[0].startswith("reading: done, 1000/1000 rows (100%) in ")


def test_interval_none_prints_only_what_is_written() -> None:
    err, out = io.StringIO(), io.StringIO()
    with Progress(2, "x", stream=err, out=out, interval=None) as bar:
        bar.update(2)
        bar.write("hello")
    assert err.getvalue() == "" and out.getvalue() == "hello\n"


def test_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    err, out = FakeTerminal(), io.StringIO()
    with Progress(3, "training", stream=err, out=out, quiet=True, interval=0) as bar:
        assert bar.mode == "off"
        bar.update(3, loss=0.1)
        bar.write("epoch 1")
    with EpochProgress(2, quiet=True, stream=err, out=out) as show:
        show(entry(1))
        show(entry(2))
    with task("loading", quiet=True, stream=err) as step:
        step.done("10 ratings")
    for _ in track(range(3), "x", quiet=True, stream=err, out=out):
        pass
    assert err.getvalue() == "" and out.getvalue() == ""
    with Progress(1, "evaluate", stream=err, out=out, quiet=True) as bar:
        bar.write("u1  0.9012", always=True)  # a result, not progress
    assert err.getvalue() == "" and out.getvalue() == "u1  0.9012\n"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bar_on_a_terminal() -> None:
    err, out = FakeTerminal(), io.StringIO()
    with Progress(3, "training", unit="epochs", stream=err, out=out) as bar:
        assert bar.mode == "bar"
        bar.update(1, loss=0.5)
        bar.write("epoch 1 done")
        bar.update(2)
    shown = err.getvalue()
    assert "training" in shown and "3/3" in shown and "\r" in shown
    assert out.getvalue() == "epoch 1 done\n"


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


def test_task_lines() -> None:
    err = io.StringIO()
    with task("loading ratings.csv", stream=err) as step:
        step.done("100,000 ratings")
    lines = err.getvalue().splitlines()
    assert lines[0] == "loading ratings.csv..."
    assert lines[1].startswith("loading ratings.csv: done in ")
    assert lines[1].endswith(" (100,000 ratings)")
    err = io.StringIO()
    with pytest.raises(RuntimeError), task("loading bad.csv", stream=err):
        raise RuntimeError("broken")
    assert err.getvalue() == "loading bad.csv...\n"  # no "done" for a failed step


def test_track_and_reader(tmp_path: Any) -> None:
    err = io.StringIO()
    assert list(track([1, 2, 3], "items", stream=err, interval=0)) == [1, 2, 3]
    assert err.getvalue().splitlines()[-1].startswith("items: 3/3 it (100%)")
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 10_000)
    err = io.StringIO()
    with open(path, "rb") as handle, Progress(10_000, "reading", unit="B", stream=err,
                                                interval=0, unit_scale=True) as bar:
        reader = bar.wrap_reader(handle)
        while reader.read(4096):
            pass
        assert bar.n == 10_000
        assert reader.name == str(path)


def test_default_streams_are_the_process_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(1, "x", interval=0) as bar:  # pytest's captured streams are not terminals
        bar.update(1)
        bar.write("to stdout")
    captured = capsys.readouterr()
    assert captured.out == "to stdout\n"
    assert captured.err.startswith("x: 1/1 it (100%)")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        Progress(mode="fancy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        Progress(interval=-1)
    with pytest.raises(ValueError, match="total"):
        Progress(total=-1)


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
    import io

    from autorec import AutoRec
    from autorec.progress import EpochProgress

    calls: list[tuple[int, int]] = []
    AutoRec(hidden=4, epochs=2, batch_size=8, validation=0.0, random_state=0,
            device="cpu").fit(low_rank, on_batch_end=lambda done, total: calls.append(
                (done, total)))
    n_batches = -(-30 // 8)  # 30 item rows (I-AutoRec), 8 a batch
    assert calls == [(k, n_batches) for k in range(1, n_batches + 1)] * 2

    out = io.StringIO()
    show = EpochProgress(3, mode="lines", out=out, stream=io.StringIO())
    show.batch(1, 4)
    assert out.getvalue() == ""  # a short epoch prints nothing between its lines
    monkeypatch.setattr(EpochProgress, "BATCH_LINE_SECONDS", 0.0)
    show.batch(2, 4)
    assert "2/4 batches of the epoch" in out.getvalue()
    quiet = io.StringIO()
    EpochProgress(3, quiet=True, out=quiet).batch(2, 4)
    assert quiet.getvalue() == ""
