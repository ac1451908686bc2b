"""``autorec evaluate``: score one configuration under an evaluation protocol (several splits),
print a table and write DIR/results.json."""

from __future__ import annotations

import argparse
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..evaluate import PAPER_REPEATS, PROTOCOLS, score_split, splits, summarise
from ._common import (
    MAX_SEED,
    Outputs,
    fraction,
    output_dir,
    output_file,
    positive_int,
    require_finite,
    seed,
    signals_held,
    write_json_atomic,
)
from ._options import (
    CANONICAL_SPLITS,
    COMMAND_DEFAULTS,
    add_data_options,
    add_model_options,
    at_least_two,
    build_model,
    canonical,
    check_canonical,
    load_ratings,
    recorded_settings,
    resolve,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a configuration under a protocol (repeated splits, k-fold, canonical)",
        description="Train and score one configuration on every split of a protocol and report "
        "per-split and mean RMSE/MAE with a 95% confidence interval. Each model chooses its "
        "epochs on a validation part of its own training ratings; test ratings are only "
        "scored.",
    )
    add_data_options(parser, files=False)
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--protocol", choices=PROTOCOLS,
                          help=f"holdout: one random split (default); paper: random 90/10 "
                          f"split repeated {PAPER_REPEATS} times, seeds SEED..SEED+"
                          f"{PAPER_REPEATS - 1}; kfold: --folds folds; u1..u5, ua, ub: the "
                          "ML-100K canonical splits")
    protocol.add_argument("--folds", type=at_least_two, metavar="K",
                          help="folds of --protocol kfold (default: 5)")
    protocol.add_argument("--repeats", type=positive_int, metavar="R",
                          help="repeat holdout or kfold with seeds SEED..SEED+R-1, paper's 5 "
                          "splits with seeds SEED..SEED+5R-1 (default: 1)")
    protocol.add_argument("--test-ratio", type=fraction, metavar="F",
                          help="test fraction of holdout splits (default: 0.1)")
    protocol.add_argument("--seed", type=seed, metavar="N",
                          help="first seed of the splits and of the models (default: 0)")
    add_model_options(parser)
    protocol.add_argument("--k", type=positive_int, metavar="K",
                          help="ranking metrics (precision, recall, NDCG, MAP, hit rate) at K; "
                          "relevant = rating in the upper quarter of the scale, 4+ on 1-5 "
                          f"(default: {COMMAND_DEFAULTS['evaluate']['k']})")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=output_dir, metavar="DIR", help="write DIR/results.json")
    output.add_argument("--plot", type=output_file, metavar="FILE.png",
                        help="plot every split's training curves to FILE and the predicted "
                        "against the true ratings to FILE-predictions.png (needs autorec[plot])")
    output.add_argument("--quiet", action="store_const", const=True, default=None,
                        help="no progress (bars on a terminal; lines for long epochs and "
                        "large files otherwise)")
    return parser


def run(args: argparse.Namespace) -> int:
    params = resolve(args)  # --config first: it may name the data
    template = build_model(params, args.seed)
    protocol = args.named("protocol", "--protocol", args.protocol)  # a flag or the file's
    if args.protocol in CANONICAL_SPLITS:
        if args.repeats != 1:
            args.parser_error(f"{protocol} is one fixed split; drop "
                              f"{args.named('repeats', '--repeats')}")
        check_canonical(args, protocol)
    seeds = args.repeats * (PAPER_REPEATS if args.protocol == "paper" else 1)
    if args.protocol not in CANONICAL_SPLITS and args.seed + seeds - 1 > MAX_SEED:
        # each split's seed is recorded, and train --seed takes it to rerun that split
        args.parser_error(f"{args.named('seed', '--seed', args.seed)} gives {seeds} splits "
                          f"seeds up to {args.seed + seeds - 1}, past the largest seed "
                          f"{MAX_SEED}")
    outputs = Outputs()  # every output checked before any data is read (README: Bad input)
    for option in ("data", "config"):
        outputs.input(f"--{option}", getattr(args, option, None))
    outputs.folder("--out", args.out, ("results.json",))
    if args.plot is not None:
        outputs.plot("--plot", args.plot)
        outputs.file("--plot", _scatter_path(args.plot))

    chosen = splits(
        args.protocol,
        lambda: load_ratings(args)[0],
        lambda name: canonical(args, name, protocol),
        seed=args.seed, test_ratio=args.test_ratio, folds=args.folds, repeats=args.repeats,
    )
    # the table's header comes with its first row: bad data (unreadable, or too few ratings
    # for a part the fit needs) is one line on stderr, with nothing printed before it
    what = args.dataset if args.data is None else str(args.data)
    header = (f"{template.variant}-AutoRec, protocol {args.protocol} on {what}"
              f"{f', preset {args.preset}' if args.preset else ''}\n"
              f"{'split':<22} {'RMSE':>8} {'MAE':>8} {'valid.':>8} {'test':>7} {'cold':>6} "
              f"{'epochs':>8} {'seconds':>8} {f'NDCG@{args.k}':>8}")
    k = args.k
    from ..progress import EpochProgress

    results = []
    plotted: list[tuple[Any, ...]] = []  # label, curves, best epochs, true and predicted
    for split in chosen:
        model = build_model(params, split.seed)
        with EpochProgress(model.epochs, networks=len(model._network_specs()),
                           label=f"{split.label}: ", quiet=bool(args.quiet), lines=False) as show:
            result = score_split(model, split, k=args.k, on_epoch_end=show,
                                 eval_set=split.test if args.plot is not None else None)
        require_finite({f"{split.label}: test RMSE": result["rmse"],
                        f"{split.label}: test MAE": result["mae"]})
        results.append(result)
        if args.plot is not None:
            plotted.append((split.label, model.history_, result["best_epochs"], split.test.rating,
                            model.predict(split.test.user_ids, split.test.item_ids)))
        epochs = ",".join(str(e) for e in result["best_epochs"])
        validation, ndcg = (f"{value:8.4f}" if not math.isnan(value) else f"{'-':>8}"
                            for value in (result["validation_rmse"], result[f"ndcg@{k}"]))
        if len(results) == 1:
            print(header)
        print(f"{split.label:<22} {result['rmse']:8.4f} {result['mae']:8.4f} {validation} "
              f"{result['n_test']:7d} {result['n_cold']:6d} {epochs:>8} "
              f"{result['fit_seconds']:8.1f} {ndcg}", flush=True)
    summary = summarise(results)
    low, high = summary["ci95_rmse"]
    interval = (f", 95% CI [{low:.4f}, {high:.4f}]" if not math.isnan(low) else "")
    print(f"{'mean':<22} {summary['mean_rmse']:8.4f} {summary['mean_mae']:8.4f}")
    ndcg_low, ndcg_high = summary[f"ci95_ndcg@{k}"]
    ndcg_interval = (f" (95% CI [{ndcg_low:.4f}, {ndcg_high:.4f}])"
                     if not math.isnan(ndcg_low) else "")
    which = ("by predicted rating" if template.ranking == "none"
             else f"of the ranking model ({template.ranking})")
    ranked = summary.get("n_ranked_splits", len(results))
    over = ("splits" if ranked == len(results)
            else f"the {ranked} of {len(results)} splits with a relevant test rating")
    if ranked:
        print(f"ranking at {k} {which}, mean over {over}: "
              + ", ".join(f"{name} {summary[f'mean_{name}@{k}']:.4f}"
                          + (ndcg_interval if name == "ndcg" else "")
                          for name in ("precision", "recall", "ndcg", "map", "hit_rate")))
    else:  # it printed "precision nan, recall nan, ...", as train did
        print(f"ranking at {k} {which}: no split has a test user with a relevant rating (at "
              f"least {results[0].get('threshold', float('nan')):g}); no figures")
    print(f"mean RMSE {summary['mean_rmse']:.4f}{interval} over {summary['n_splits']} "
          f"split{'s' if summary['n_splits'] > 1 else ''}; MAE {summary['mean_mae']:.4f}; "
          f"{summary['fit_seconds']:.1f}s of training")

    with signals_held():  # the figures and results.json: all written, or none
        if args.plot is not None:
            import numpy as np

            from ..plots import plot_predictions, plot_training

            labels, curves, kept, truth, predicted = zip(*plotted, strict=True)
            plot_training(dict(zip(labels, curves, strict=True)), args.plot,
                          title=f"protocol {args.protocol} on {what}",
                          best_epochs=dict(zip(labels, kept, strict=True)))
            scatter = _scatter_path(args.plot)
            plot_predictions(np.concatenate(truth), np.concatenate(predicted), scatter)
            print(f"wrote {args.plot} and {scatter}")

        if args.out is not None:
            payload = {
                **summary,
                "protocol": args.protocol,
                "data": what,
                "preset": args.preset,
                "splits": results,
                **recorded_settings(args, template, args.protocol),
                "versions": {"autorec": __version__, "python": platform.python_version()},
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            write_json_atomic(args.out / "results.json", payload)
            print(f"wrote {args.out / 'results.json'}")
    return 0


def _scatter_path(plot: Path) -> Path:
    """Where ``--plot FILE`` puts the predicted-against-true figure."""
    return plot.with_name(f"{plot.stem}-predictions{plot.suffix}")
