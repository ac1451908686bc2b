"""Data-parallel training (issue 8): sharding, the reductions against one process, the command
line on two CPU processes against one, and a killed rank that ends the job."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist

from autorec.cli._launch import _describe_failure
from autorec.cli.main import main
from autorec.distributed import World, pooled_errors, world
from autorec.metrics import mae, rmse

TESTS = Path(__file__).resolve().parent

needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed with gloo")
needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                reason="finds the rank of a worker process through /proc")


# -- without processes ------------------------------------------------------------------------
def test_single_process_world_is_the_identity():
    group = world()
    assert group.size == 1 and group.is_main
    rows = np.arange(10)
    assert [b.tolist() for b in group.batches(rows, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert group.rank_seed(123) == 123
    assert group.sum([1.5, 2]) == [1.5, 2.0]
    truth, predicted = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    assert pooled_errors(truth, lambda part: predicted[part]) == (rmse(truth, predicted),
                                                                   mae(truth, predicted))


def test_errors_of_many_pairs_are_summed_a_chunk_at_a_time(monkeypatch):
    """Past SCORE_CHUNK pairs one process predicts a chunk at a time (bounded temporaries at
    Netflix shape): every pair once, in order, and the same RMSE and MAE to rounding."""
    from autorec import distributed

    monkeypatch.setattr(distributed, "SCORE_CHUNK", 4)
    rng = np.random.default_rng(0)
    truth, predicted = rng.uniform(1, 5, 10), rng.uniform(1, 5, 10)
    asked: list[slice] = []

    def predict(part: slice) -> np.ndarray:
        asked.append(part)
        return predicted[part]

    got = pooled_errors(truth, predict)
    assert [len(predicted[part]) for part in asked] == [4, 4, 2]
    assert np.concatenate([predicted[part] for part in asked]).tolist() == predicted.tolist()
    np.testing.assert_allclose(got, (rmse(truth, predicted), mae(truth, predicted)),
                               rtol=1e-12)


def test_shards_cover_each_batch_once_and_in_order():
    rows = np.arange(23)
    for size in (2, 3, 5):
        parts = [list(World(rank=r, size=size).batches(rows, 7)) for r in range(size)]
        assert all(len(p) == 4 for p in parts)  # every rank takes part in every step
        for step in range(4):
            joined = np.concatenate([parts[r][step] for r in range(size)])
            assert joined.tolist() == rows[7 * step:7 * step + 7].tolist()
    # a last batch of 2 rows over 3 ranks leaves one rank an empty part
    assert [len(World(rank=r, size=3).batches(rows, 7).__next__()) for r in range(3)] == [2, 2, 3]
    assert len(list(World(rank=0, size=3).batches(rows, 7))[-1]) == 0
    seeds = {World(rank=r, size=3).rank_seed(5) for r in range(3)}
    assert len(seeds) == 3


def test_failure_line_names_the_killed_rank():
    failures = {
        0: SimpleNamespace(exitcode=1, pid=10, timestamp=2,
                           message="autorec train: error: rank 0 of 2 lost contact with ..."),
        1: SimpleNamespace(exitcode=-9, pid=11, timestamp=1, message="Signal 9 (SIGKILL)"),
    }
    line, status = _describe_failure("train", failures)
    assert status == 1 and "rank 1 (pid 11) was killed by SIGKILL" in line
    same = {r: SimpleNamespace(exitcode=2, pid=r, timestamp=5,
                               message="autorec train: error: data.csv, line 3: bad rating")
            for r in (0, 1)}
    assert _describe_failure("train", same) == (
        "autorec train: error: data.csv, line 3: bad rating", 2)
    # rank 0 wrote its error, then the agent stopped it (SIGTERM) on rank 1's exit: its
    # recorded status counts, not the signal (about 3 runs in 8 of --nproc 2 exited 1)
    line = "autorec train: error: data.csv, line 3: expected 3 fields, found 2"
    stopped = {0: SimpleNamespace(exitcode=-15, pid=1, timestamp=5, message=line,
                                  error_file_data={"message": line, "status": 2}),
               1: SimpleNamespace(exitcode=2, pid=2, timestamp=5, message=line,
                                  error_file_data={"message": line, "status": 2})}
    assert _describe_failure("train", stopped) == (line, 2)
    # SIGTERM or Ctrl-C sent to rank 1 alone: rank 0 lost contact, and was named as the cause
    lost = "autorec train: error: rank 0 of 2 lost contact with the other processes ..."
    for code, name in ((-15, "SIGTERM"), (130, "SIGINT"), (143, "SIGTERM")):
        signalled = {0: SimpleNamespace(exitcode=1, pid=10, timestamp=5, message=lost),
                     1: SimpleNamespace(exitcode=code, pid=11, timestamp=5, message="")}
        line, status = _describe_failure("train", signalled)
        assert status == 1 and f"rank 1 (pid 11) was stopped by {name}" in line, line


def test_ranks_other_than_0_log_nothing_of_autorec(caplog, capsys):
    """-v on several processes printed every log line twice: ``disabled`` on the "autorec"
    logger silenced its own records only, not those of autorec.fitting and the rest."""
    import logging

    from autorec.distributed import quiet_unless_main

    with caplog.at_level(logging.INFO):
        with quiet_unless_main(World(rank=1, size=2, backend="gloo")):
            logging.getLogger("autorec.fitting").info("from rank 1")
            logging.getLogger("autorec").warning("from rank 1 too")
            print("printed by rank 1")
        logging.getLogger("autorec.fitting").info("after the block")
        with quiet_unless_main(World(rank=0, size=2, backend="gloo")):
            logging.getLogger("autorec.selection").info("from rank 0")
    assert [r.getMessage() for r in caplog.records] == ["after the block", "from rank 0"]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("command", [["evaluate", "--data", "x.csv"],
                                     ["tune", "--data", "x.csv", "--trials", "1"],
                                     ["predict", "--model", "m", "--input", "p.csv",
                                      "--output", "o.csv"]])
def test_other_commands_refuse_to_run_as_several_processes(capsys, monkeypatch, tmp_path,
                                                          command):
    """Under torchrun every process ran the whole of evaluate or tune (the table printed
    twice; two tune processes opened one study, leaving a trial stuck RUNNING): refused."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert f"autorec {command[0]}: error: runs in one process" in err
    assert os.listdir(tmp_path) == []


def test_nproc_refuses_checkpoints(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", str(tmp_path / "x.csv"), "--nproc", "2",
              "--checkpoint-dir", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--checkpoint-dir does not work with several" in err


# -- two processes ----------------------------------------------------------------------------
_REDUCTION_SCRIPT = """
import json, sys
import torch
sys.path.insert(0, {tests!r})
from conftest import make_low_rank
from autorec import distributed
from autorec.member import orient
from autorec.model import AutoRecNet
from autorec.train import Trainer

ratings = make_low_rank(n_users=60, n_items=49, seed=1)   # 49 rows, batches 16+16+16+1

def train(optimizer):
    matrix, _ = orient(ratings.user_idx, ratings.item_idx, ratings.rating, "item",
                       ratings.n_users, ratings.n_items)
    net = AutoRecNet(ratings.n_users, 8, dropout=0.0, sparse_grad=optimizer == "lazy_adam",
                     generator=torch.Generator().manual_seed(0))
    trainer = Trainer(net, matrix, optimizer=optimizer, lr=0.01, l2=5.0, batch_size=16,
                      device=torch.device("cpu"), seed=3)
    losses = [trainer.train_epoch().train_loss for _ in range(4)]
    return torch.cat([p.detach().flatten() for p in net.parameters()]), losses

optimizers = ("adam", "lazy_adam", "rprop")
alone = {{name: train(name) for name in optimizers}}          # before joining: one process
with distributed.process_group("cpu", timeout=60) as world:
    result = {{"size": world.size}}
    for name in optimizers:
        weights, losses = train(name)
        other = [torch.zeros_like(weights) for _ in range(world.size)]
        torch.distributed.all_gather(other, weights)
        result[name] = {{
            "vs_one_process": float((weights - alone[name][0]).abs().max()),
            "scale": float(alone[name][0].abs().max()),
            "across_ranks": max(float((w - weights).abs().max()) for w in other),
            "losses": losses, "losses_alone": alone[name][1]}}
    with open({out!r} + f"/rank{{world.rank}}.json", "w") as handle:
        json.dump(result, handle)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def _two_ranks(tmp_path: Path, script: str) -> list[Any]:
    """Run ``script`` as 2 processes (torchrun, gloo); what each wrote to ``rank<r>.json``."""
    path = tmp_path / "ranks.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--max-restarts", "0", str(path)],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.distributed
@needs_gloo
def test_two_processes_make_the_single_process_update(tmp_path):
    """Every optimizer (dense Adam, lazy Adam's row-sparse gradients, full-batch Rprop), with
    the l2 penalty and a rank left with an empty part of a batch: the weights after 4 epochs
    on 2 processes are those of 1 process (to float32 rounding) and the same on both ranks."""
    for result in _two_ranks(tmp_path, _REDUCTION_SCRIPT.format(tests=str(TESTS),
                                                                 out=str(tmp_path))):
        assert result["size"] == 2
        for name in ("adam", "lazy_adam", "rprop"):
            figures = result[name]
            assert figures["across_ranks"] == 0.0, name  # the ranks never drift apart
            assert figures["vs_one_process"] <= 1e-5 * max(figures["scale"], 1.0), (name, figures)
            np.testing.assert_allclose(figures["losses"], figures["losses_alone"], rtol=1e-5)


_DIFFERENT_RANKS_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import make_low_rank
from autorec import AutoRec, distributed

with distributed.process_group("cpu", timeout=60) as world:
    ratings = make_low_rank(n_users=30, n_items=20, seed=world.rank if {data!r} else 0)
    epochs = 1 + world.rank if {settings!r} else 1
    try:
        AutoRec(hidden=4, epochs=epochs, ranking="none", random_state=0).fit(ratings)
        message = None
    except ValueError as error:
        message = str(error)
    with open({out!r} + f"/rank{{world.rank}}.json", "w") as handle:
        json.dump(message, handle)
"""


@pytest.mark.distributed
@needs_gloo
@pytest.mark.parametrize(("data", "settings"), [(True, False), (False, True), (False, False)])
def test_ranks_given_other_data_or_settings_are_refused(tmp_path, data: bool,
                                                        settings: bool) -> None:
    """Launched by hand on several machines, each rank reads its own copy and command: other
    ratings or settings on one mixed splits silently, hung at an exchange or aborted in
    gloo. Every rank now refuses, naming the one that differs."""
    for message in _two_ranks(tmp_path, _DIFFERENT_RANKS_SCRIPT.format(
            tests=str(TESTS), out=str(tmp_path), data=data, settings=settings)):
        if data or settings:
            assert message == ("rank 1 of 2 has other training ratings or settings than rank "
                               "0: every process of a data-parallel run needs the same data "
                               "and command"), message
        else:
            assert message is None


@pytest.mark.distributed
@pytest.mark.real_data
@needs_gloo
def test_two_cpu_processes_match_one_on_ml100k(capsys, tmp_path, ml100k_dir):
    """`autorec train --nproc 2` (default settings, 8 epochs) on ML-100K: test RMSE within
    0.005 of the single-process run, metrics.json from rank 0 with world_size 2."""
    common = ["train", "--data-dir", str(ml100k_dir), "--no-download", "--epochs", "8",
              "--quiet"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes has (and far faster on busy cores)
    try:
        assert main([*common, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    done = subprocess.run(
        [sys.executable, "-m", "autorec", *common, "--nproc", "2", "--out",
         str(tmp_path / "two"), "-v"],
        capture_output=True, text=True, timeout=180, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # with -v, rank 0's log alone (rank 1 logged that it joined), beside torch's agent's
    log_lines = [line for line in done.stderr.strip().splitlines() if " autorec." in line]
    assert all(line.startswith("INFO autorec") for line in log_lines), log_lines
    assert [line for line in log_lines if "joined the process group" in line] == [
        "INFO autorec.distributed: 2 processes joined the process group (gloo)"]
    assert sum("training item-AutoRec" in line for line in log_lines) == 1
    assert done.stdout.count("test RMSE") == 1  # rank 0 alone prints
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["n_test"] == one["n_test"] == 10000 and two["n_cold"] == one["n_cold"]
    assert abs(two["rmse"] - one["rmse"]) < 0.005, (one["rmse"], two["rmse"])
    assert abs(two["validation_rmse"] - one["validation_rmse"]) < 0.005
    # the ranking metrics too (they were left out of several processes' runs, unsaid)
    assert done.stdout.count("ranking at 10") == 1
    for key in ("precision@10", "ndcg@10", "hit_rate@10"):
        assert key in two and abs(two[key] - one[key]) < 0.03, (key, one.get(key), two.get(key))


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


@pytest.mark.distributed
@pytest.mark.real_data
@needs_gloo
@needs_proc
def test_sigterm_to_the_launcher_says_terminated_as_one_process_does(tmp_path, ml100k_dir):
    """SIGTERM to a running `autorec train --nproc 2` printed `autorec: interrupted` (the
    word for Ctrl-C); one process says `autorec: terminated`, as the README does. Status
    143 either way."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "autorec", "train", "--data-dir", str(ml100k_dir),
         "--no-download", "--split", "u1", "--hidden", "8", "--epochs", "200", "--patience",
         "200", "--ranking", "none", "--nproc", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
        start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 90, ""
        assert proc.stdout is not None
        while "epoch   1/" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen += proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "autorec: terminated", err
    assert not (tmp_path / "runs").exists()


@pytest.mark.distributed
@pytest.mark.real_data
@needs_gloo
@needs_proc
def test_killing_one_rank_ends_the_job(tmp_path, ml100k_dir):
    """SIGKILL to rank 1 of a running `autorec train --nproc 2`: the job ends soon, with a
    non-zero status, one line on stderr, no traceback and no hang."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "autorec", "train", "--data-dir", str(ml100k_dir),
         "--no-download", "--epochs", "200", "--patience", "200", "--nproc", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
        start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 90, ""
        assert proc.stdout is not None
        while "epoch   1/" not in seen:  # both ranks are training once rank 0 reports epoch 1
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if select.select([proc.stdout], [], [], 1.0)[0]:
                seen += proc.stdout.readline()
        ranks = {_rank_of(child): child for child in _children(proc.pid)}
        assert set(ranks) == {0, 1}, ranks
        killed_at = time.monotonic()
        os.kill(ranks[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "rank 1" in lines[0] and "SIGKILL" in lines[0], lines[0]
    assert took < 30, took
    assert all(_rank_of(child) is None for child in ranks.values())  # no worker left behind


def test_failure_line_of_a_hung_rank_is_the_timeout_not_the_launchers_kill():
    """A hung rank is killed by the agent (SIGKILL after SIGTERM's grace) once another gave
    up waiting for it: the line said it 'was killed by SIGKILL', as if from outside."""
    waited = ("autorec train: error: rank 0 of 2 gave up waiting 30 s (--dist-timeout) for "
              "the other processes at an exchange: one of them hung or fell far behind (...)")
    failures = {0: SimpleNamespace(exitcode=1, pid=10, timestamp=5, message=waited),
                1: SimpleNamespace(exitcode=-9, pid=11, timestamp=5, message="Signal 9")}
    assert _describe_failure("train", failures) == (waited + "; stopped rank 1 (pid 11)", 1)


def test_a_timed_out_exchange_says_so():
    import autorec.distributed as distributed

    error = World(rank=1, size=3)._lost(RuntimeError(
        "[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv"))
    assert str(error).startswith(f"rank 1 of 3 {distributed.TIMED_OUT}")
    assert "--dist-timeout" in str(error) and "hung" in str(error)
    lost = World(rank=0, size=2)._lost(RuntimeError("Connection closed by peer"))
    assert distributed.TIMED_OUT not in str(lost) and "lost contact" in str(lost)


def test_a_process_of_a_group_ends_without_the_interpreters_shutdown(monkeypatch):
    """At the shutdown a gloo worker thread could still be releasing its last exchange's
    tensors (which takes the GIL): the process aborted (SIGABRT reported instead of the
    run's own error, 1 diverging --nproc 2 run in about 30; seen in a core dump). A rank's
    process ends with os._exit after flushing, its status kept."""
    import os as os_module

    import torch.distributed  # noqa: F401 (a rank has it loaded)

    from autorec.cli import main as main_module

    class Exited(Exception):
        pass

    def fake_exit(status: int) -> None:
        raise Exited(status)

    import autorec.data._source as source

    monkeypatch.setattr(main_module, "main", lambda argv=None: 1)
    monkeypatch.setattr(os_module, "_exit", fake_exit)
    # (an earlier test's reader stopped by bad data takes that exit too)
    monkeypatch.setattr(source, "readers_stopped_by_error", lambda: False)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(Exited) as caught:
        main_module.cli()
    assert caught.value.args == (1,)
    monkeypatch.delenv("RANK")  # one process: the usual exit
    with pytest.raises(SystemExit):
        main_module.cli()


def test_verbose_lets_torchs_agent_log_through():
    """-v showed torch's elastic agent's account (so _launch's docstring); with -v now raising
    autorec's logger only, the check looked at the root logger and filtered it out."""
    import logging

    from autorec.cli._launch import _silence_elastic_logs

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    agent = logging.getLogger("torch.distributed.elastic.agent")
    ours = logging.getLogger("autorec")
    before = ours.level
    agent.addHandler(handler)
    try:
        ours.setLevel(logging.INFO)  # what -v sets (the root logger stays at WARNING)
        undo = _silence_elastic_logs()
        try:
            agent.info("agent line")
        finally:
            undo()
        assert seen == ["agent line"]
    finally:
        agent.removeHandler(handler)
        ours.setLevel(before)
