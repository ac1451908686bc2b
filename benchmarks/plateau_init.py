"""The plateau at the start of training on the Netflix-style synthetic data, against the
initial weights.

On data whose planted low-rank signal is strong (``make_synthetic`` with ``--interaction 1.0
--noise 0.4``, as ``netflix_scale.py`` writes it), the default network's validation RMSE sits
on the bias baseline for several epochs before it falls (BENCHMARKS.md, "Netflix shape to
early stopping"). This script trains the default (``AutoRec(random_state=0)``, no refit, no
ranking model) on a smaller set of that kind, and can change the initial weights, to see
what the plateau depends on:

* ``--encoder-sd``: the encoder's initial normal sd (the library draws 0.01);
* ``--decoder-sd``: the decoder's initial normal sd, drawn as training starts; the library
  starts a residual network's decoder at zero (so that epoch 0 predicts the baseline
  exactly), and 0 keeps that.

The library is not changed: the initial weights are redrawn after it draws them. Prints the
validation RMSE of every epoch and the first epoch 0.01 below epoch 1's (the baseline's, as
the network adds almost nothing in its first epoch)::

    python benchmarks/plateau_init.py                       # the default
    python benchmarks/plateau_init.py --encoder-sd 0.001    # smaller encoder weights
    python benchmarks/plateau_init.py --decoder-sd 0.01     # a decoder that starts non-zero
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from _common import add_machine_options, make_synthetic, wait_for_quiet, write_json

import autorec
from autorec import model as model_module
from autorec import train as train_module


def redraw_initial_weights(encoder_sd: float | None, decoder_sd: float, seed: int) -> None:
    """Make every network built from now on start from the given initial weights."""
    draw = model_module.AutoRecNet.reset_parameters

    def reset_parameters(net: Any, generator: torch.Generator | None = None) -> None:
        draw(net, generator)
        if encoder_sd is not None:
            with torch.no_grad():
                net.encoder_weight.normal_(0.0, encoder_sd, generator=generator)

    model_module.AutoRecNet.reset_parameters = reset_parameters  # type: ignore[method-assign]
    if decoder_sd > 0.0:
        # the member zeroes a residual network's decoder after building it: redraw it as
        # training starts (early stopping's epoch-0 fallback stays the zero decoder, the
        # baseline)
        trainer_init = train_module.Trainer.__init__

        def start_trainer(trainer: Any, net: Any, *args: Any, **kwargs: Any) -> None:
            with torch.no_grad():
                net.decoder_weight.normal_(0.0, decoder_sd,
                                           generator=torch.Generator().manual_seed(seed))
            trainer_init(trainer, net, *args, **kwargs)

        train_module.Trainer.__init__ = start_trainer  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="50000x2000x2000000", help="USERSxITEMSxRATINGS")
    parser.add_argument("--interaction", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--encoder-sd", type=float, default=None,
                        help="the encoder's initial sd (default: the library's, 0.01)")
    parser.add_argument("--decoder-sd", type=float, default=0.0,
                        help="the decoder's initial sd (default 0: the library's zero start)")
    parser.add_argument("--seed", type=int, default=0)
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/plateau_init.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n_users, n_items, n_ratings = (int(p) for p in args.shape.split("x"))
    user, item, rating = make_synthetic(n_users, n_items, n_ratings, args.seed,
                                        interaction=args.interaction, noise=args.noise)
    ratings = autorec.Ratings.from_arrays(user, item, rating, source="synthetic")
    train, test = autorec.random_split(ratings, 0.1, random_state=0)
    redraw_initial_weights(args.encoder_sd, args.decoder_sd, args.seed)
    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    model = autorec.AutoRec(epochs=args.epochs, patience=args.epochs + 1, refit=False,
                            ranking="none", random_state=args.seed, device=args.device)
    model.fit(train, on_epoch_end=history.append)
    seconds = time.perf_counter() - started
    curve = [round(float(e["validation_rmse"]), 4) for e in history]
    first = next((e["epoch"] for e in history
                  if e["validation_rmse"] < curve[0] - 0.01), None)
    test_rmse = float(model.evaluate(test)["rmse"])
    print(f"encoder sd {args.encoder_sd or 'library (0.01)'}, decoder sd "
          f"{args.decoder_sd or 'library (zero)'}: {seconds:.0f} s")
    print(f"  validation RMSE by epoch: {', '.join(str(v) for v in curve)}")
    print(f"  first epoch 0.01 below epoch 1's: {first}; test RMSE after {args.epochs} "
          f"epochs (best epoch kept): {test_rmse:.4f}")
    write_json(args.out, args, {"validation_rmse": curve, "first_epoch_below": first,
                                "test_rmse": test_rmse, "seconds": seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
