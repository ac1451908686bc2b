"""Micro-benchmarks behind the kernel choices in ``src/autorec/sparse.py`` and ``train.py``.

For one batch of 256 rows with ``--nnz-per-row`` random observed columns out of ``--inputs``
(users for I-AutoRec) and ``--hidden`` units, it times (median of ``--repeats`` calls):

* the masked decoder, i.e. ``H @ W.T + b`` needed only at observed positions:
  ``sampled_addmm`` with ``W.t()`` as a view (what autorec uses), ``sampled_addmm`` with a
  contiguous copy of ``W.t()``, the dense product then a gather, and a gather of rows then a
  row-wise dot product;
* the weight gradient ``X^T @ G`` (``inputs x hidden``): a fresh ``torch.sparse.mm`` with the
  pre-built transposed CSR, the same from ``csr.t()``, and adding in place into a kept
  buffer (what autorec uses);
* one Adam step over two ``inputs x hidden`` weights: the per-tensor loop, ``foreach`` and
  ``fused`` (what autorec uses).

With ``--shape ml-1m|ml-10m`` it times instead one training batch of 256 random items of
the synthetic set of that shape (``_common.make_synthetic``, seed 0) through torch's kernels
and through the compiled ones of ``autorec._kernels``: encoder SpMM, decoder SDDMM, the
decoder's backward (weight rows and codes' gradient), the encoder's weight gradient, and the
lazy Adam step of one weight (gather / fused / scatter against the in-place pass), and the
two gradient kernels with dense Adam's step inside (every row, as the default's ``adam``
epochs run them) against that step alone over every row, with GFLOP/s of useful work (2 x
ratings x hidden per product).

Run::

    python benchmarks/kernels.py                                  # ML-100K-like batch
    python benchmarks/kernels.py --inputs 100000 --nnz-per-row 100   # the 100k-user set
    python benchmarks/kernels.py --shape ml-10m --clock cpu --threads 1   # torch vs compiled
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from _common import write_json

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")


def timed(fn: Callable[[], object], repeats: int, clock: str = "wall") -> float:
    """Median wall milliseconds of ``repeats`` calls, or with ``clock="cpu"`` the least CPU
    milliseconds of this process (all threads), which other load inflates less."""
    fn()
    now = time.process_time if clock == "cpu" else time.perf_counter
    times = []
    for _ in range(repeats):
        started = now()
        fn()
        times.append(now() - started)
    return (min(times) if clock == "cpu" else statistics.median(times)) * 1e3


def compare_compiled(args: argparse.Namespace) -> None:
    """Torch's kernels against autorec's compiled ones on one batch of a synthetic shape."""
    import numpy as np
    import scipy.sparse as sp
    from _common import make_synthetic

    from autorec import _kernels, sparse
    from autorec.optim import LazyAdam
    from autorec.sparse import SparseBatch

    shapes = {"ml-1m": (6_040, 3_706, 1_000_209), "ml-10m": (69_878, 10_677, 10_000_054)}
    n_users, n_items, n_ratings = shapes[args.shape]
    user, item, rating = make_synthetic(n_users, n_items, n_ratings, 0)
    matrix = sp.csr_matrix((rating, (item, user)), shape=(n_items, n_users))
    rows = np.random.default_rng(args.seed).permutation(n_items)[:args.rows]
    batch = SparseBatch.from_scipy(matrix[rows])
    h = args.hidden
    gen = torch.Generator().manual_seed(args.seed)
    weight = torch.randn(n_users, h, generator=gen) * 0.01
    codes = torch.rand(args.rows, h, generator=gen)
    grad_out = torch.randn(batch.nnz, generator=gen)
    plan = sparse._plan(batch, weight) if _kernels.available() else None
    csr, csr_t = batch.csr(), batch.csr_t()
    csr_g, csr_tg = batch.csr(grad_out), batch.csr_t(grad_out)
    cases: dict[str, dict[str, Callable[[], object]]] = {
        "encoder X @ W": {"torch sparse.mm": lambda: torch.sparse.mm(csr, weight)},
        "decoder at observed positions": {
            "torch sampled_addmm": lambda: torch.sparse.sampled_addmm(csr, codes, weight.t(),
                                                                      beta=0.0)},
        "decoder backward (both gradients)": {
            "torch two sparse.mm": lambda: (torch.sparse.mm(csr_tg, codes),
                                            torch.sparse.mm(csr_g, weight))},
        "encoder weight gradient X^T @ G": {
            "torch sparse.mm": lambda: torch.sparse.mm(csr_t, codes)},
    }
    if plan is not None:
        cases["encoder X @ W"]["compiled"] = lambda: _kernels.spmm(plan, batch.values, weight,
                                                                    args.rows)
        cases["decoder at observed positions"]["compiled"] = lambda: _kernels.sddmm(
            plan, codes, weight, batch.nnz)
        cases["decoder backward (both gradients)"]["compiled"] = lambda: (
            _kernels.decoder_backward(plan, grad_out, codes, weight))
        cases["encoder weight gradient X^T @ G"]["compiled"] = lambda: _kernels.weight_grad(
            plan, batch.values, codes)
    flops = {"encoder X @ W": 2, "decoder at observed positions": 2,
             "decoder backward (both gradients)": 4, "encoder weight gradient X^T @ G": 2}
    assert batch.touched is not None
    print(f"{args.shape}: batch {args.rows} x {n_users}, {batch.nnz:,} ratings, "
          f"{len(batch.touched):,} columns touched, hidden {h}; {torch.get_num_threads()} "
          f"threads; {args.clock} clock")
    results: dict[str, dict[str, float]] = {}
    for group, fns in cases.items():
        results[group] = {name: timed(fn, args.repeats, args.clock) for name, fn in fns.items()}
        for name, ms in results[group].items():
            gflops = flops[group] * batch.nnz * h / ms / 1e6
            print(f"  {group:36s} {name:22s} {ms:9.2f} ms {gflops:7.1f} GFLOP/s")
    rows_grad = torch.randn(len(batch.touched), h, generator=gen) * 1e-3
    param = torch.nn.Parameter(weight.clone())
    results["lazy Adam step, one weight"] = {}
    import autorec.optim as optim_module
    for label, threshold in (("gather, fused, scatter", 1 << 62), ("compiled in place", 0)):
        if threshold == 0 and plan is None:
            continue
        optim_module.COMPILED_MIN_VALUES = threshold
        optimizer = LazyAdam([param], lr=1e-3)

        def step(optimizer: LazyAdam = optimizer) -> None:
            param.grad = torch.sparse_coo_tensor(batch.touched.unsqueeze(0), rows_grad,
                                                 param.shape, is_coalesced=True)
            optimizer.step()

        ms = timed(step, args.repeats, args.clock)
        results["lazy Adam step, one weight"][label] = ms
        print(f"  {'lazy Adam step, one weight':36s} {label:22s} {ms:9.2f} ms")
    if plan is not None:
        results["dense Adam steps inside the kernels"] = adam_in_kernels(
            plan, batch, weight, codes, grad_out, args)
    write_json(args.out, args, results)
    print(f"wrote {args.out}")


def adam_in_kernels(plan, batch, weight, codes, grad_out, args: argparse.Namespace
                    ) -> dict[str, float]:
    """The two gradient kernels with ``adam`` (every row of the weight stepped as its gradient
    is summed, as the default's ``adam`` epochs run them) against Adam's step alone over every
    row (a zero gradient): how much of a step is the sweep of the weight and its moments."""
    from autorec import _kernels

    n_rows = weight.shape[0]
    state = [weight.clone(), torch.zeros_like(weight), torch.zeros_like(weight)]
    adam = _kernels.RowAdam(*state, decay=1e-4, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                            step=10, all_rows=True)
    every_row = torch.arange(n_rows)
    zeros = torch.zeros_like(weight)
    cases = {
        "decoder backward with Adam": (4, lambda: _kernels.decoder_backward(
            plan, grad_out, codes, state[0], adam=adam)),
        "encoder weight gradient with Adam": (2, lambda: _kernels.weight_grad(
            plan, batch.values, codes, adam=adam)),
        "Adam alone, every row": (0, lambda: _kernels.adam_rows(adam, every_row, zeros)),
    }
    results = {}
    for name, (flops, fn) in cases.items():
        ms = results[name] = timed(fn, args.repeats, args.clock)
        gflops = f"{flops * batch.nnz * args.hidden / ms / 1e6:7.1f} GFLOP/s" if flops else ""
        print(f"  {name:36s} {'compiled, every row':22s} {ms:9.2f} ms {gflops}")
    sweep = results["Adam alone, every row"]
    moved = 6 * 4 * n_rows * args.hidden + 4 * n_rows * args.hidden  # 3 read + 3 written, grad
    print(f"  Adam's sweep: {moved / sweep / 1e6:.1f} GB/s; the two kernels less one sweep "
          f"each: {results['decoder backward with Adam'] - sweep:.2f} + "
          f"{results['encoder weight gradient with Adam'] - sweep:.2f} ms")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256, help="batch rows (default: 256)")
    parser.add_argument("--inputs", type=int, default=943, help="columns (default: 943)")
    parser.add_argument("--hidden", type=int, default=500, help="hidden units (default: 500)")
    parser.add_argument("--nnz-per-row", type=int, default=53,
                        help="observed entries per row (default: 53, as ML-100K items)")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls (default: 9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", choices=("ml-1m", "ml-10m"), default=None,
                        help="time torch's kernels against the compiled ones on one batch of "
                             "this synthetic shape instead")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default="/tmp/autorec-bench/kernels.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.shape is not None:
        compare_compiled(args)
        return

    gen = torch.Generator().manual_seed(args.seed)
    b, n, h = args.rows, args.inputs, args.hidden
    rows = torch.arange(b).repeat_interleave(args.nnz_per_row)
    cols = torch.randint(0, n, (len(rows),), generator=gen)
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.rand(len(rows), generator=gen),
                                  (b, n)).coalesce()
    csr = coo.to_sparse_csr()
    csr_t = torch.sparse_coo_tensor(coo.indices().flip(0), coo.values(), (n, b)).coalesce() \
        .to_sparse_csr()
    r, c = coo.indices()
    weight = torch.randn(n, h, generator=gen)
    hidden = torch.randn(b, h, generator=gen)
    grad = torch.randn(b, h, generator=gen)
    buffer = torch.zeros(n, h)

    def in_place() -> torch.Tensor:
        buffer.zero_()
        return buffer.addmm_(csr_t, grad)

    cases: dict[str, dict[str, Callable[[], object]]] = {
        "decoder at observed positions": {
            "sampled_addmm, W.t() view (autorec)":
                lambda: torch.sparse.sampled_addmm(csr, hidden, weight.t(), beta=0.0),
            "sampled_addmm, contiguous W.t()":
                lambda: torch.sparse.sampled_addmm(csr, hidden, weight.t().contiguous(),
                                                   beta=0.0),
            "dense H @ W.T, then gather": lambda: (hidden @ weight.t()).view(-1)[r * n + c],
            "gather rows, row-wise dot": lambda: (hidden[r] * weight[c]).sum(1),
        },
        "weight gradient X^T @ G": {
            "fresh sparse.mm, pre-built X^T CSR": lambda: torch.sparse.mm(csr_t, grad),
            "fresh sparse.mm, csr.t()": lambda: torch.sparse.mm(csr.t(), grad),
            "addmm_ into kept buffer (autorec)": in_place,
        },
    }
    results: dict[str, dict[str, float]] = {}
    print(f"batch {b} x {n}, {coo._nnz()} observed, hidden {h}; "
          f"{torch.get_num_threads()} threads")
    for group, fns in cases.items():
        results[group] = {name: timed(fn, args.repeats) for name, fn in fns.items()}

    params = [torch.nn.Parameter(torch.randn(n, h, generator=gen)) for _ in range(2)]
    for p in params:
        p.grad = torch.randn(n, h, generator=gen)
    results["Adam step"] = {}
    for label, kwargs in (("per-tensor loop", {"foreach": False}), ("foreach", {"foreach": True}),
                          ("fused (autorec)", {"fused": True})):
        optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5, **kwargs)
        results["Adam step"][label] = timed(optimizer.step, args.repeats)

    for group, figures in results.items():
        print(f"{group}:")
        for name, ms in figures.items():
            print(f"  {name:40s} {ms:9.2f} ms")
    write_json(args.out, args, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
