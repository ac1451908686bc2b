"""The memory estimate made before training, and the memory available (issue 5)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from autorec import AutoRec, AutorecError, ResourceError, memory
from autorec.memory import available_bytes, check_training_memory, training_bytes

GB = 10**9


def test_estimate_counts_weights_gradients_adam_batch_and_evaluation() -> None:
    estimate = training_bytes(n_rows=1_000, n_inputs=1_000_000, hidden=500, batch_rows=256,
                              batch_nnz=10_000)
    n_params = 2 * 1_000_000 * 500 + 500 + 1_000_000
    assert estimate.parameters == 4 * 4 * n_params  # values, gradients, two Adam moments
    assert estimate.batch >= 256 * 500 * 4 * 4  # several batch x hidden float tensors
    assert estimate.evaluation == 1_000 * 500 * 4
    # the I-AutoRec on 1M users peaked at 14.6 GB: the estimate is near, not below
    assert 14.6 * GB <= estimate.total <= 20 * GB


def fake_system(tmp_path: Path, *, meminfo_kib: int, cgroup_lines: str,
                files: dict[str, str]) -> tuple[Path, Path]:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {meminfo_kib} kB\n")
    (proc / "self" / "status").write_text("VmSize:\t1024 kB\n")
    (proc / "self" / "cgroup").write_text(cgroup_lines)
    for name, text in files.items():
        path = cgroup / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc, cgroup


def test_available_is_the_tightest_of_meminfo_and_cgroup_v2(tmp_path) -> None:
    proc, cgroup = fake_system(tmp_path, meminfo_kib=8_000_000, cgroup_lines="0::/job/run\n",
                               files={"job/memory.max": f"{4 * GB}\n",
                                      "job/memory.current": f"{1 * GB}\n",
                                      "job/run/memory.max": "max\n",
                                      "job/run/memory.current": "5\n"})
    assert available_bytes(proc, cgroup) == (3 * GB, "cgroup memory limit")
    proc, cgroup = fake_system(tmp_path / "b", meminfo_kib=1_000_000, cgroup_lines="0::/\n",
                               files={"memory.max": f"{4 * GB}\n", "memory.current": "0\n"})
    assert available_bytes(proc, cgroup) == (1_024_000_000, "MemAvailable")


def test_available_with_cgroup_v1_unlimited_and_limited(tmp_path) -> None:
    lines = "4:memory:/a\n3:cpu:/\n"
    unlimited = {"memory/a/memory.limit_in_bytes": "9223372036854771712\n",
                 "memory/a/memory.usage_in_bytes": "100\n"}
    proc, cgroup = fake_system(tmp_path, meminfo_kib=2_000_000, cgroup_lines=lines,
                               files=unlimited)
    assert available_bytes(proc, cgroup) == (2_048_000_000, "MemAvailable")
    limited = {"memory/a/memory.limit_in_bytes": f"{GB}\n",
               "memory/a/memory.usage_in_bytes": f"{GB // 4}\n"}
    proc, cgroup = fake_system(tmp_path / "b", meminfo_kib=2_000_000, cgroup_lines=lines,
                               files=limited)
    assert available_bytes(proc, cgroup) == (GB - GB // 4, "cgroup memory limit")


def test_the_page_cache_a_cgroup_can_reclaim_is_room(tmp_path) -> None:
    """memory.current (v2) and memory.usage_in_bytes (v1) count the page cache: inside a
    container, reading the data files made a run that fits look out of memory."""
    proc, cgroup = fake_system(tmp_path, meminfo_kib=8_000_000, cgroup_lines="0::/\n",
                               files={"memory.max": f"{4 * GB}\n",
                                      "memory.current": f"{3 * GB}\n",
                                      "memory.stat": f"anon 1\ninactive_file {2 * GB}\n"})
    assert available_bytes(proc, cgroup) == (3 * GB, "cgroup memory limit")
    limited = {"memory/a/memory.limit_in_bytes": f"{GB}\n",
               "memory/a/memory.usage_in_bytes": f"{GB // 2}\n",
               "memory/a/memory.stat": f"inactive_file 7\ntotal_inactive_file {GB // 4}\n"}
    proc, cgroup = fake_system(tmp_path / "b", meminfo_kib=2_000_000,
                               cgroup_lines="4:memory:/a\n", files=limited)
    assert available_bytes(proc, cgroup) == (GB - GB // 4, "cgroup memory limit")


def test_available_without_proc(tmp_path) -> None:
    figure, _ = available_bytes(tmp_path / "none", tmp_path / "none")
    assert figure is None or figure > 0  # only an address-space limit could be left


def rows_of(matrix: sp.csr_matrix) -> tuple[np.ndarray, int]:
    """What the check reads of a training matrix: ratings per row and the input length."""
    return np.diff(matrix.indptr), matrix.shape[1]


def one_rating_each(n_users: int, n_items: int) -> sp.csr_matrix:
    """items x users (I-AutoRec), every user rating one item."""
    users = np.arange(n_users)
    return sp.csr_matrix((np.ones(n_users, np.float32), (users % n_items, users)),
                         shape=(n_items, n_users))


def test_check_refuses_with_figures_and_levers(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: (8 * GB, "cgroup memory limit"))
    matrix = one_rating_each(1_000_000, 1_000)
    with pytest.raises(ResourceError) as info:
        check_training_memory(*rows_of(matrix), hidden=500, batch_size=256, variant="item",
                              device="cpu")
    message = str(info.value)
    assert isinstance(info.value, AutorecError) and "\n" not in message
    assert "not enough memory" in message and "8.0 GB is available" in message
    assert "--variant user (1,000 inputs per row instead of 1,000,000)" in message
    assert "--hidden" in message and "GB" in message
    # the same data as U-AutoRec has few inputs per row: it fits, and is not suggested back
    check_training_memory(*rows_of(matrix.T.tocsr()), hidden=500, batch_size=256, variant="user",
                          device="cpu")


def test_check_does_not_suggest_the_variant_that_is_worse(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: (10**6, "MemAvailable"))
    with pytest.raises(ResourceError) as info:
        check_training_memory(*rows_of(one_rating_each(50, 1_000)),  # 1,000 items x 50
                              hidden=10_000, batch_size=256, variant="item", device="cpu")
    assert "--variant" not in str(info.value)


def test_check_passes_when_unknown(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: (None, ""))
    check_training_memory(*rows_of(one_rating_each(10, 5)), hidden=10**12, batch_size=1,
                          variant="item")


def test_fit_refuses_before_allocating(low_rank) -> None:
    started = time.perf_counter()
    with pytest.raises(ResourceError, match="--hidden"):
        AutoRec(hidden=100_000_000_000, epochs=1, device="cpu").fit(low_rank)
    assert time.perf_counter() - started < 5


def test_allocation_failure_during_training_is_one_line(capsys, monkeypatch, tmp_path) -> None:
    """Memory that runs out in the middle of an epoch ends like the estimate does."""
    from autorec.cli.main import main
    from autorec.train import Trainer

    def exhausted(self, batch):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "800000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(Trainer, "_backward", exhausted)
    monkeypatch.setattr(Trainer, "_backward_and_step", exhausted)  # one process's path
    data = tmp_path / "r.csv"
    data.write_text("user_id,item_id,rating\n" + "".join(
        f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(12) for i in range(8) if (u * i) % 3))
    code = main(["train", "--data", str(data), "--hidden", "4", "--epochs", "2", "--quiet",
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "ran out of memory" in err and "--hidden" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


_TRIM_PROBE = """
import sys
from autorec.memory import _read_kib, release_free_memory
from pathlib import Path

def rss():
    return _read_kib(Path("/proc/self/status"), "VmRSS:")

# 200 MB of 64 KB blocks on the C heap, every tenth kept so that the freed ones sit below
# live blocks (free() alone cannot hand them back)
blocks = [bytearray(64 << 10) for _ in range(3200)]
kept = blocks[::10]
del blocks
before = rss()
release_free_memory(min_resident=before + (1 << 40))
untrimmed = rss()
release_free_memory(min_resident=before // 2)
print(before, untrimmed, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_the_free_heap_goes_back_only_in_a_process_at_least_min_resident_large() -> None:
    out = subprocess.run([sys.executable, "-c", _TRIM_PROBE], capture_output=True, text=True,
                         check=True).stdout.split()
    before, untrimmed, trimmed = (int(x) for x in out)
    assert abs(untrimmed - before) < 20 << 20  # below min_resident: nothing returned
    assert before - trimmed > 100 << 20  # above it: most of the 180 MB freed goes back


@pytest.mark.parametrize("error", [
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    MemoryError(),
])
def test_running_out_of_memory_while_training_says_what_to_change(error) -> None:
    with pytest.raises(ResourceError, match=r"ran out of memory while training .*--hidden"):
        with memory.memory_errors_as_resource_error():
            raise error


def test_other_runtime_errors_pass_through_the_memory_translation() -> None:
    import torch

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with memory.memory_errors_as_resource_error():
            raise RuntimeError("shape mismatch")
    with pytest.raises(ResourceError):
        with memory.memory_errors_as_resource_error():
            raise torch.OutOfMemoryError("CUDA error")


def test_dense_batches_are_counted_and_named_as_a_lever(monkeypatch) -> None:
    """The estimate left out --dense-batches' batch_rows x n_inputs matrices: such a run
    passed the check and ran out of memory in training, and the message never named it."""
    sparse = training_bytes(n_rows=2_000, n_inputs=300_000, hidden=10, batch_rows=5_000,
                            batch_nnz=150_000)
    dense = training_bytes(n_rows=2_000, n_inputs=300_000, hidden=10, batch_rows=5_000,
                           batch_nnz=150_000, dense_batches=True)
    assert dense.batch - sparse.batch == 3 * 5_000 * 300_000 * 4
    monkeypatch.setattr(memory, "available_bytes", lambda: (4 * GB, "MemAvailable"))
    matrix = one_rating_each(300_000, 2_000)  # 2,000 items x 300,000 users
    check_training_memory(*rows_of(matrix), hidden=10, batch_size=5_000, variant="item")
    with pytest.raises(ResourceError, match="--no-dense-batches"):
        check_training_memory(*rows_of(matrix), hidden=10, batch_size=5_000, variant="item",
                              dense_batches=True)


def test_eases_memory_is_checked_before_the_networks_train(tmp_path) -> None:
    """EASE's two items x items matrices were never counted: under a memory limit a run
    trained every network, then ended in a numpy MemoryError traceback (status 1)."""
    import resource
    import subprocess
    import sys

    lines = [f"{u},{i},{1 + (u + i) % 5}" for i in range(20_000) for u in (i % 97, 97 + i % 53)]
    data = tmp_path / "wide.csv"
    data.write_text("user_id,item_id,rating\n" + "\n".join(lines) + "\n")

    def limited() -> None:  # room for the run, not for EASE's 3.2 GB on 20,000 items
        resource.setrlimit(resource.RLIMIT_AS, (3_600_000_000, resource.RLIM_INFINITY))

    # one thread: each BLAS or OpenMP thread reserves address space, which on a many-core
    # machine would eat the limit before the check is reached
    env = {**os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"), "1")}
    done = subprocess.run([sys.executable, "-m", "autorec", "train", "--data", str(data),
                           "--hidden", "4", "--epochs", "1", "--quiet"], capture_output=True,
                          text=True, timeout=300, preexec_fn=limited, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        line for line in done.stderr.strip().splitlines() if "EASE" in line], done.stderr
    assert "not enough memory: the ranking model EASE (--ranking auto) on 19," in done.stderr


def test_running_out_of_memory_outside_training_is_one_line(capsys, monkeypatch) -> None:
    """Only a training epoch turned a MemoryError into one line: elsewhere (predict, the
    refit, validation scoring) it was a traceback with status 1."""
    from autorec.cli import datasets
    from autorec.cli.main import main

    def short_of_memory(args: object) -> int:
        raise MemoryError("Unable to allocate 22.9 MiB for an array")

    monkeypatch.setattr(datasets, "run", short_of_memory)
    assert main(["datasets"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "autorec datasets: error: ran out of memory (Unable to allocate 22.9 MiB"), err


def test_the_other_networks_held_count_against_the_room() -> None:
    """Only one network was counted: --ensemble N, --variant both and a list of l2 values
    passed the check, then ran out of memory after the first network had trained."""
    from autorec.exceptions import ResourceError

    rows = np.full(50, 10)
    check_training_memory(rows, 40, hidden=8, batch_size=16, variant="item")
    with pytest.raises(ResourceError, match=r"fewer networks \(--ensemble, --variant both"):
        check_training_memory(rows, 40, hidden=8, batch_size=16, variant="item",
                              held=10**15)


def test_the_processes_of_a_machine_share_its_memory(monkeypatch) -> None:
    """Each process of train --nproc N (or torchrun) checked against all of the machine's
    memory, so N processes could each pass and together run out."""
    from autorec.exceptions import ResourceError
    from autorec.memory import _device_room

    room, _ = _device_room("cpu")
    if room is None:
        pytest.skip("no memory figure on this system")
    rows = np.full(4_000, 50)  # about room / 2000 of weights at 1,000,000 inputs x 16
    hidden = max(1, int(room / 50 / 1_000_000 / 4 / 4))
    check_training_memory(rows, 1_000_000, hidden=hidden, batch_size=16, variant="item")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")  # one process: not a rank of a run
    check_training_memory(rows, 1_000_000, hidden=hidden, batch_size=16, variant="item")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ResourceError, match="shared by this machine's 64 processes"):
        check_training_memory(rows, 1_000_000, hidden=hidden, batch_size=16, variant="item")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "x")  # not a count: no sharing, no ValueError
    check_training_memory(rows, 1_000_000, hidden=hidden, batch_size=16, variant="item")


def test_the_training_ratings_are_counted() -> None:
    """The estimate left out the trainer's matrix of the ratings (index, value, target each):
    4x low with hidden 4 on 2.7 million ratings, so the check passed and the refit failed."""
    shape = {"n_rows": 5_000, "n_inputs": 20_000, "hidden": 4, "batch_rows": 256,
             "batch_nnz": 140_000}
    assert (training_bytes(**shape, nnz=2_700_000).total - training_bytes(**shape).total
            == 2_700_000 * 16)
    rows = np.full(5_000, 540)
    estimate = check_training_memory(rows, 20_000, hidden=4, batch_size=256, variant="item")
    assert estimate.ratings == 2_700_000 * 16
    # on a GPU they stay in host memory: not counted against the card's (without a card
    # here the room is unknown and the estimate is returned as it stands)
    on_card = check_training_memory(rows, 20_000, hidden=4, batch_size=256, variant="item",
                                    device="cuda:0")
    assert on_card.ratings == 0 and on_card.total == estimate.total - estimate.ratings
