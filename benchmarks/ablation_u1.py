"""What each improvement adds, on MovieLens-100K u1.base / u1.test.

Starts from ``--preset paper`` and the d2l.ai ``reference`` recipe and adds one change at a
time up to ``--preset best``. Every row is ``autorec.AutoRec(**params).fit(u1.base)`` with
``random_state=0``; the epoch (and any other choice) is made on a validation part of u1.base,
and u1.test is only scored. Prints a Markdown table (test RMSE, validation RMSE, seconds).

    python benchmarks/ablation_u1.py
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from _common import add_machine_options, default_data_dir, wait_for_quiet, write_json

import autorec
from autorec.config import PRESETS

REFERENCE = PRESETS["reference"]
#: (label, parameters): each row adds one change to the row before it (after the paper row).
ROWS: list[tuple[str, dict[str, Any]]] = [
    ("paper: I-AutoRec, Rprop full batch, L2 chosen from the paper's grid", PRESETS["paper"]),
    ("reference: the d2l.ai recipe (25 epochs, Adam, no validation)", REFERENCE),
    ("+ 5 % validation, early stopping (patience 10), best epoch kept",
     {**REFERENCE, "validation": 0.05, "epochs": 200}),
    ("+ the paper's L2 penalty (l2 = 100) instead of Adam's weight decay",
     {**REFERENCE, "validation": 0.05, "epochs": 200, "weight_decay": 0.0, "l2": 100.0}),
    ("+ baseline: learn deviations from mean + user + item biases",
     {**REFERENCE, "validation": 0.05, "epochs": 200, "weight_decay": 0.0, "l2": 100.0,
      "baseline": "biases", "cold": "baseline"}),
    ("+ input dropout 0.25 (denoising), lazy Adam", {**PRESETS["default"], "refit": False}),
    ("+ refit on all of u1.base for the chosen epochs = the default", PRESETS["default"]),
    ("+ I-AutoRec and U-AutoRec, 3 networks each, blended on validation = --preset best",
     PRESETS["best"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--seed", type=int, default=0)
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/ablation_u1.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train, test = autorec.canonical_split("u1", args.data_dir, download=False)
    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    rows = []
    print("| configuration | test RMSE | validation RMSE | best epochs | seconds |")
    print("|---|---|---|---|---|")
    for label, params in ROWS:
        started = time.perf_counter()
        model = autorec.AutoRec(**{**params, "random_state": args.seed,
                                   "device": args.device}).fit(train)
        seconds = time.perf_counter() - started
        result = model.evaluate(test)
        epochs = ",".join(str(m.best_epoch) for m in model.members_)
        validation = model.validation_rmse_
        rows.append({"label": label, "params": params, "rmse": result["rmse"],
                     "mae": result["mae"], "validation_rmse": validation,
                     "best_epochs": epochs, "seconds": seconds})
        shown = "-" if validation != validation else f"{validation:.4f}"
        print(f"| {label} | {result['rmse']:.4f} | {shown} | {epochs} | {seconds:.1f} |",
              flush=True)
    write_json(args.out, args, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
