"""``autorec train``: load, split, train (choosing the epoch on validation), evaluate, report,
and write DIR/metrics.json."""

from __future__ import annotations

import argparse
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, distributed
from ..data.ratings import Ratings
from ..estimator import AutoRec
from ..evaluate import Split, ranking_report, ranking_summary, split_threshold, splits, summarise
from ..split import align
from ._common import (
    Outputs,
    fraction,
    output_dir,
    output_file,
    positive_int,
    require_finite,
    seconds,
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
    load_ratings,
    read_file,
    recorded_settings,
    resolve,
)

SPLITS = ("random", "kfold", *CANONICAL_SPLITS)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train AutoRec, choosing the epoch on validation, and report test RMSE/MAE",
        description="Train an AutoRec model and report RMSE and MAE over all test ratings. The "
        "number of epochs is chosen on a validation part of the training ratings; the test "
        "ratings are only reported.",
    )
    add_data_options(parser)
    split = parser.add_argument_group("split")
    split.add_argument("--split", choices=SPLITS,
                       help="random holdout (default), k-fold over all ratings (--folds), or a "
                       "canonical ML-100K split")
    split.add_argument("--folds", type=at_least_two, metavar="K",
                       help="folds of --split kfold (default: 5)")
    split.add_argument("--test-ratio", type=fraction, metavar="F",
                       help="test fraction of a random split (default: 0.1)")
    split.add_argument("--seed", type=seed, metavar="N",
                       help="seed of the split and of training (default: 0)")
    add_model_options(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=output_dir, metavar="DIR", help="write DIR/metrics.json")
    output.add_argument("--save", type=output_dir, metavar="DIR",
                        help="save the trained model to DIR (model.safetensors + model.json) "
                        "for autorec predict / recommend / serve --model DIR (k-fold: the last "
                        "fold's model)")
    output.add_argument("--plot", type=output_file, metavar="FILE.png",
                        help="plot the training curves (train loss, validation and test RMSE "
                        "per epoch) to FILE (.png, .svg or .pdf; needs autorec[plot])")
    output.add_argument("--k", type=positive_int, metavar="K",
                        help="ranking metrics (precision, recall, NDCG, MAP, hit rate) at K, "
                        "relevant = the upper quarter of the scale, 4+ on 1-5 (default: "
                        f"{COMMAND_DEFAULTS['train']['k']})")
    output.add_argument("--quiet", action="store_const", const=True, default=None,
                        help="no progress (bars on a terminal, lines otherwise)")
    # checkpoints and exact resume (issue 8): autorec.checkpoint
    output.add_argument("--checkpoint-dir", type=output_dir, metavar="DIR",
                        help="after every epoch, save in DIR (atomically) all that training "
                        "needs to continue exactly; a DIR holding a checkpoint needs --resume")
    output.add_argument("--resume", action="store_const", const=True, default=None,
                        help="continue from the checkpoint in --checkpoint-dir and end as an "
                        "uninterrupted run would (with none there, start from the beginning)")
    # data-parallel training (issue 8): autorec.distributed
    parallel = parser.add_argument_group(
        "several processes (data parallel; also under torchrun --nproc-per-node N -m autorec "
        "train)")
    parallel.add_argument("--nproc", type=positive_int, metavar="N",
                          help="train with N processes on this machine, each on its share of "
                          "every batch, gradients summed (gloo on CPU, nccl with one GPU per "
                          "process); default 1")
    parallel.add_argument("--dist-timeout", type=seconds, metavar="SECONDS",
                          help="how long a process waits for the others at any exchange before "
                          f"the run fails (default {distributed.DEFAULT_TIMEOUT:g})")
    return parser


def _split_list(args: argparse.Namespace) -> tuple[list[Split], str]:
    """The (train, test) pairs the options ask for and a description of them."""
    if args.train is not None:
        if args.split is not None:  # "random" too: ignored, then recorded as the split
            args.parser_error(f"--train/--test already split the data; drop "
                              f"{args.named('split', '--split')}")
        train, test = align(read_file(args.train, args), read_file(args.test, args))
        return [Split("", train, test, args.seed)], f"{args.train} + {args.test}"
    split = args.split or "random"
    if split in CANONICAL_SPLITS:
        parts = canonical(args, split, args.named("split", "--split", split))
        return [Split("", *parts, args.seed)], f"ml-100k split {split}"
    ratings, what = load_ratings(args)
    if split == "kfold":
        return (list(splits("kfold", lambda: ratings, seed=args.seed, folds=args.folds)),
                f"{what}, {args.folds}-fold")
    parts = list(splits("holdout", lambda: ratings, seed=args.seed, test_ratio=args.test_ratio))
    return [Split("", parts[0].train, parts[0].test, args.seed)], (
        f"{what}, random {1 - args.test_ratio:g}/{args.test_ratio:g} split")


def _split_name(args: argparse.Namespace) -> str:
    return "files" if args.train is not None else (args.split or "random")


def _checkpointing(args: argparse.Namespace, split: Split, part: int, n_parts: int,
                   label: str) -> tuple[dict[str, Any], str | None]:
    """``fit``'s checkpoint options for this split (a ``fold-K`` folder per fold), and the
    line that says where ``--resume`` starts (printed once the fit has checked the
    checkpoint)."""
    if args.checkpoint_dir is None:
        return {}, None
    folder = Path(args.checkpoint_dir) / (f"fold-{part}" if n_parts > 1 else "")
    note = None
    if args.resume:
        from ..checkpoint import describe

        where = describe(folder)
        note = (f"{label}resuming from {folder}: {where}" if where else
                f"{label}note: no checkpoint in {folder}; training from the beginning")
    context = {"split": _split_name(args), "seed": split.seed, "part": split.label}
    if context["split"] == "random":
        context["test_ratio"] = args.test_ratio
    if context["split"] == "kfold":
        context["folds"] = args.folds
    return {"checkpoint_dir": folder, "resume": bool(args.resume),
            "checkpoint_context": context}, note


def _train_one(args: argparse.Namespace, params: dict[str, Any], split: Split, part: int = 1,
               n_parts: int = 1) -> tuple[AutoRec, dict[str, Any]]:
    """Fit on ``split.train``, report on ``split.test``; the model and the figures."""
    from ..progress import EpochProgress

    model = build_model(params, split.seed)
    label = f"{split.label}: " if split.label else ""
    started = time.perf_counter()
    checkpointing, note = _checkpointing(args, split, part, n_parts, label)
    pending = [note] if note is not None else []

    def say_where_it_resumes() -> None:  # the fit has checked the checkpoint by now
        if pending:
            print(pending.pop(), flush=True)

    with EpochProgress(model.epochs, networks=len(model._network_specs()), label=label,
                       quiet=bool(args.quiet)) as show:
        model.fit(split.train, eval_set=split.test,
                  on_epoch_end=lambda entry: (say_where_it_resumes(), show(entry)),
                  on_batch_end=lambda done, total: (say_where_it_resumes(),
                                                    show.batch(done, total)),
                  **checkpointing)
    say_where_it_resumes()
    wall = time.perf_counter() - started
    report = _evaluate(model, split.test)
    require_finite({f"{label}test RMSE": report["rmse"], f"{label}test MAE": report["mae"]})
    # every process holds the whole fitted model: each makes the same lists (no collective
    # on the way, so no process waits on rank 0 past the timeout), rank 0 reports them
    ranking = ranking_report(model, split.train, split.test, k=args.k,
                             threshold=split_threshold(split, model.rating_scale))
    return model, {
        **ranking,
        "rmse": report["rmse"],
        "mae": report["mae"],
        "n_train": len(split.train),
        "n_test": report["n"],
        "n_cold": report["n_cold"],
        "cold_value": model.cold_value(),
        "validation_rmse": model.validation_rmse_,
        "validation_mean_rmse": model.validation_mean_rmse_,
        "test_mean_rmse": float(np.sqrt(np.mean(np.square(
            split.test.rating - model.global_mean_), dtype=np.float64))),
        "best_epoch": model.best_epoch_,
        "best_epochs": [member.best_epoch for member in model.members_],
        "epochs_run": max(entry["epoch"] for entry in model.history_) if model.history_ else 0,
        "l2": model.l2_,
        "bias_regularisation": [model.biases_.reg_user, model.biases_.reg_item],
        "blend": model.blend_.tolist(),
        "train_seconds": model.epoch_seconds_,  # every l2 value tried, and the refit
        "ranking_model": ranking_summary(model),
        "ranking_seconds": (model.ranking_.report.get("seconds", 0.0)
                            if model.ranking_ is not None else 0.0),
        "wall_seconds": wall,
        # the users the ranking metrics averaged over (ranking_report's n_users, which the
        # model's count below replaces; evaluate's results.json keeps it as n_users)
        "n_ranked_users": ranking.get("n_users"),
        "n_users": len(model.users_),
        "n_items": len(model.items_),
        "rating_scale": list(model.rating_scale_),
        "device": str(model.device_),
        "history": model.history_,
        "model_params": model.get_params(),
    }


def run(args: argparse.Namespace) -> int:
    params = resolve(args)  # --config first: it may name the data
    template = build_model(params, args.seed)  # every option checked before data is read
    if args.resume and args.checkpoint_dir is None:
        args.parser_error(f"{args.named('resume', '--resume')} needs --checkpoint-dir")
    outputs = Outputs()  # every output checked before any data is read (README: Bad input)
    for option in ("data", "train", "test", "config"):
        outputs.input(f"--{option}", getattr(args, option, None))
    outputs.model("--save", args.save)
    outputs.folder("--out", args.out, ("metrics.json",))
    # before --plot: a figure inside a checkpoint folder yet to be made is named as such
    outputs.checkpoint("--checkpoint-dir", args.checkpoint_dir, resume=bool(args.resume),
                       folds=args.split == "kfold")
    outputs.plot("--plot", args.plot)

    # data-parallel training (issue 8): launch the processes, or be one of them
    nproc = args.nproc or 1
    if args.checkpoint_dir is not None and (nproc > 1 or distributed.launched()):
        args.parser_error(f"{args.named('checkpoint_dir', '--checkpoint-dir')} does not work "
                          "with several processes (--nproc, torchrun) yet")
    flag = args.named("dist_timeout", "--dist-timeout") == "--dist-timeout"  # a file's is fine
    if args.dist_timeout is not None and flag and nproc == 1 and not distributed.launched():
        # ignored without a word: one process waits for no other
        args.parser_error("--dist-timeout is how long the processes of --nproc N (or "
                          "torchrun) wait for one another; one process has none")
    timeout = args.dist_timeout or distributed.DEFAULT_TIMEOUT
    if distributed.launched() and nproc not in (1, distributed.local_world_size()):
        args.parser_error(f"--nproc {nproc}, but torchrun started "
                          f"{distributed.local_world_size()} processes on this machine")
    if not distributed.launched() and nproc > 1:
        from ._launch import launch

        return launch(nproc, args.argv, device=params.get("device"), timeout=timeout)
    params["device"] = distributed.rank_device(params.get("device"))
    with distributed.process_group(params["device"], timeout) as world, \
            distributed.quiet_unless_main(world):
        return _train_all(args, params, template)


def _train_all(args: argparse.Namespace, params: dict[str, Any], template: AutoRec) -> int:
    """Train on every split and report; every process of a data-parallel run runs this, and
    rank 0 prints and writes."""
    parts, description = _split_list(args)
    first = parts[0]

    def sizes(counts: list[int]) -> str:  # folds may differ by one rating
        return f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"

    print(f"data: {description}: {sizes([len(p.train) for p in parts])} train / "
          f"{sizes([len(p.test) for p in parts])} test ratings"
          f"{' per fold' if len(parts) > 1 else ''}, {first.train.n_users} users, "
          f"{first.train.n_items} items")

    results = []
    for part, split in enumerate(parts, start=1):
        model, result = _train_one(args, params, split, part, len(parts))  # the last is saved
        results.append(result)
        if split.label:
            print(f"{split.label}: test RMSE {results[-1]['rmse']:.4f}, "
                  f"MAE {results[-1]['mae']:.4f}")
    if len(results) == 1:
        summary = dict(results[0])
    else:
        pooled = summarise([{**r, "split": f"fold {k}", "fit_seconds": r["wall_seconds"]}
                            for k, r in enumerate(results, start=1)])
        summary = {
            "rmse": pooled["pooled_rmse"], "mae": pooled["pooled_mae"],
            "rmse_fold_mean": pooled["mean_rmse"], "rmse_fold_std": pooled["std_rmse"],
            "n_train": round(sum(r["n_train"] for r in results) / len(results)),
            "n_test": pooled["n_test"], "n_cold": pooled["n_cold"],
            "train_seconds": sum(r["train_seconds"] for r in results),
            "wall_seconds": sum(r["wall_seconds"] for r in results),
            "epochs_run": max(r["epochs_run"] for r in results),
            "device": results[0]["device"],
        }

    spread = (f" (folds {summary['rmse_fold_mean']:.4f} +- {summary['rmse_fold_std']:.4f})"
              if len(results) > 1 else "")
    several_l2 = isinstance(template.l2, list | tuple) and len(template.l2) > 1
    chosen = ((f"; l2 {summary['l2']:g} chosen on validation" if several_l2 else "")
              + f"; {_best_epochs(summary['best_epochs'])} (validation RMSE "
              f"{summary['validation_rmse']:.4f})"
              + (", then refitted on all training ratings" if template.refit else "")
              if len(results) == 1 and template.validation > 0 else "")
    print(f"{template.variant}-AutoRec on {description}: test RMSE {summary['rmse']:.4f}"
          f"{spread}, MAE {summary['mae']:.4f} over {summary['n_test']} ratings "
          f"({summary['n_cold']} cold, predicted by --cold {template.cold}){chosen}; trained "
          f"in {summary['wall_seconds']:.1f}s on {summary['device']} ("
          f"{summary['train_seconds']:.1f}s in training epochs)")
    k = args.k
    if f"ndcg@{k}" in results[0]:
        names = ("precision", "recall", "ndcg", "map", "hit_rate")
        # over the folds that had a relevant test rating (a fold without one has nan), as
        # evaluate's means: one such fold made every mean null
        ranked = [r for r in results if np.isfinite(r[f"ndcg@{k}"])]
        for name in names:
            summary[f"{name}@{k}"] = (float(np.mean([r[f"{name}@{k}"] for r in ranked]))
                                      if ranked else math.nan)
        summary["n_ranked_splits"] = len(ranked)
        thresholds = {r.get("threshold") for r in results}  # the data set's: one for all
        summary.update(k=k, threshold=thresholds.pop() if len(thresholds) == 1 else None)
        models = list(dict.fromkeys(r.get("ranking_model") for r in results))
        summary["ranking_model"] = models[0] if len(models) == 1 else None
        over = ("mean over folds" if len(ranked) == len(results) else
                f"mean over the {len(ranked)} of {len(results)} folds with a relevant test "
                "rating")
        which = (f"of each fold's own ranking model ({over}; they differ, metrics.json's "
                 "folds name them)" if len(models) > 1
                 else (f"of {models[0]}" if models[0] else "by predicted rating (--ranking "
                       "none)") + (f" ({over})" if len(results) > 1 else ""))
        if ranked:
            print(f"ranking at {k} {which}: "
                  + ", ".join(f"{name} {summary[f'{name}@{k}']:.4f}" for name in names))
        else:  # it printed "precision nan, recall nan, ..."
            print(f"ranking at {k}: no test user has a relevant rating (at least "
                  f"{results[0].get('threshold', float('nan')):g}); no figures")
    if args.plot is not None and distributed.world().is_main:
        from ..plots import plot_training

        def per_split(key: str) -> Any:  # with folds, each fold's under its label
            if len(results) == 1:
                return results[0][key]
            return {split.label: result[key] for split, result in zip(parts, results, strict=True)}

        plot_training(per_split("history"), args.plot,
                      title=f"{template.variant}-AutoRec on {description}",
                      best_epochs=per_split("best_epochs"))
        print(f"wrote {args.plot}")

    with signals_held():  # the model and metrics.json: both written, or neither
        if args.save is not None and distributed.world().is_main:
            model.save(args.save, dataset=args.dataset)
            print(f"saved the model to {args.save}")
        if args.out is not None and distributed.world().is_main:
            _write_metrics(args, summary, description, template, results)
    return 0


def _write_metrics(args: argparse.Namespace, summary: dict[str, Any], description: str,
                   template: AutoRec, results: list[dict[str, Any]]) -> None:
    """DIR/metrics.json: the run's figures, settings and versions."""
    payload = {
        **summary,
        "epochs": summary.get("epochs_run", template.epochs),
        "data": description,
        "preset": args.preset,
        **recorded_settings(args, template, _split_name(args)),
        "world_size": distributed.world().size,
        **({"folds": results} if len(results) > 1 else {}),
        "versions": {"autorec": __version__, "torch": str(torch.__version__),
                     "python": platform.python_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(args.out / "metrics.json", payload)
    print(f"wrote {args.out / 'metrics.json'}")


def _best_epochs(epochs: list[int]) -> str:
    """The epochs each network chose on validation, for the summary line: all of them for a
    few networks, their range for many."""
    if len(epochs) == 1:
        return f"best validation epoch {epochs[0]}"
    if len(epochs) <= 8:
        return f"best validation epochs {', '.join(map(str, epochs))} (one per network)"
    return f"best validation epochs {min(epochs)} to {max(epochs)} over {len(epochs)} networks"


def _evaluate(model: AutoRec, test: Ratings) -> dict[str, Any]:
    """``model.evaluate(test)``; in a data-parallel run each process scores its part of the
    test ratings and the sums of squared and absolute errors and the counts are added up."""
    world = distributed.world()
    if world.size == 1:
        return model.evaluate(test)
    part = world.shard(len(test))
    predicted, cold = model.predict(test.user_ids[part], test.item_ids[part], return_cold=True)
    errors = predicted - test.rating[part]
    sse, sae, n, n_cold = world.sum([np.square(errors).sum(), np.abs(errors).sum(),
                                     len(errors), cold.sum()])
    return {"rmse": math.sqrt(sse / n), "mae": sae / n, "n": int(n), "n_cold": int(n_cold)}
