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

Run::

    python benchmarks/kernels.py                                  # ML-100K-like batch
    python benchmarks/kernels.py --inputs 100000 --nnz-per-row 100   # the 100k-user set
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


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256, help="batch rows (default: 256)")
    parser.add_argument("--inputs", type=int, default=943, help="columns (default: 943)")
    parser.add_argument("--hidden", type=int, default=500, help="hidden units (default: 500)")
    parser.add_argument("--nnz-per-row", type=int, default=53,
                        help="observed entries per row (default: 53, as ML-100K items)")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls (default: 9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/autorec-bench/kernels.json")
    args = parser.parse_args()

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
