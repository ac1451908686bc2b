"""``autorec tune``: an Optuna search over AutoRec's settings, chosen on validation only.

The data are split as for ``autorec train`` and only the training part is searched on (each
trial holds out its own validation part); the test part is never scored. The best
configuration is written as TOML for ``--config``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..data.ratings import Ratings
from ..evaluate import splits
from ._common import Outputs, fraction, output_file, positive_float, positive_int, seed
from ._options import (
    CANONICAL_SPLITS,
    COMMAND_DEFAULTS,
    add_data_options,
    add_model_options,
    build_model,
    canonical,
    load_ratings,
    resolve,
)

_TUNE = COMMAND_DEFAULTS["tune"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune",
        help="search hyperparameters with Optuna on validation (pip install 'autorec[tune]')",
        description="Search AutoRec's settings with Optuna (TPE sampler, median pruning on the "
        "per-epoch validation RMSE). Trials see only the training part of the split and choose "
        "on a validation part of it. The study is kept in SQLite: running the same command "
        "again continues an interrupted search. A searched setting that you give (as a flag "
        "or in --config) is fixed, not searched. The best settings are written as TOML for "
        "--config.",
    )
    add_data_options(parser, files=False)
    split = parser.add_argument_group("split (only its training part is searched on)")
    split.add_argument("--split", choices=("random", *CANONICAL_SPLITS),
                       help="random holdout (default) or a canonical ML-100K split")
    split.add_argument("--test-ratio", type=fraction, metavar="F",
                       help="test fraction of a random split, set aside (default: 0.1)")
    split.add_argument("--seed", type=seed, metavar="N",
                       help="seed of the split, the sampler and the models (default: 0)")
    add_model_options(parser)
    search = parser.add_argument_group("search")
    search.add_argument("--trials", type=positive_int, metavar="N",
                        help="finished trials the study should hold (default: "
                        f"{_TUNE['trials']})")
    search.add_argument("--timeout", type=positive_float, metavar="S",
                        help="stop starting trials after S seconds")
    search.add_argument("--study", type=output_file, metavar="FILE",
                        help=f"SQLite file of the study (default: {_TUNE['study']})")
    search.add_argument("--study-name", metavar="NAME",
                        help=f"name of the study in that file (default: "
                        f"{_TUNE['study_name']})")
    search.add_argument("--out", type=output_file, metavar="FILE",
                        help=f"where to write the best settings (default: {_TUNE['out']})")
    search.add_argument("--top", type=positive_int, metavar="N",
                        help=f"trials to list at the end (default: {_TUNE['top']})")
    search.add_argument("--quiet", action="store_const", const=True, default=None,
                        help="no line per trial")
    return parser


def run(args: argparse.Namespace) -> int:
    from .._io import atomic_write
    from ..config import PRESETS
    from ..tune import (
        FINISHED,
        SEARCH_SPACE,
        best_config_toml,
        check_study,
        require_optuna,
        run_study,
    )

    require_optuna()
    chosen: set[str] = set()
    out_defaulted = args.out is None
    params = resolve(args, chosen)  # --config may name the data
    out_defaulted = out_defaulted and args.named("out", "--out") == "--out"  # nor in a file
    params.pop("random_state", None)
    # a searched parameter the user set (flag or --config) is fixed, not searched
    fixed = {name: params[name] for name in SEARCH_SPACE if name in chosen}
    if len(fixed) == len(SEARCH_SPACE):
        args.parser_error(f"every searched setting is fixed ({', '.join(SEARCH_SPACE)}): "
                          "nothing left to tune")
    build_model(params, args.seed)  # checks every fixed setting before any data is read
    if params.get("validation", 1) <= 0:  # the library's check comes after the data is read
        where = (args.named("validation", "--validation", 0) if "validation" in chosen
                 else f"{args.named('preset', '--preset', args.preset)} (validation 0)")
        args.parser_error(f"tuning chooses on a validation part, and {where} leaves none; "
                          "give --validation a fraction above 0")
    if args.out.suffix.lower() != ".toml":
        args.parser_error(f"--out {args.out}: the best settings are written as TOML (.toml)")
    outputs = Outputs()  # every output checked before any data is read (README: Bad input)
    for option in ("data", "config"):
        outputs.input(f"--{option}", getattr(args, option, None))
    outputs.file("--study", args.study)  # read and written: an SQLite file, never a device
    outputs.file("--out", args.out)
    if out_defaulted and not _written_by_tune(args.out):  # a file the user never named
        args.parser_error(f"{args.out} (the default --out) exists and was not written by "
                          "autorec tune; give --out FILE, or move it away")
    check_study(args.study, args.study_name, fixed=fixed)  # before any data is read

    split = args.split or "random"
    if split in CANONICAL_SPLITS:
        train: Ratings = canonical(args, split, args.named("split", "--split", split))[0]
        what = f"ml-100k {split}.base"
    else:
        ratings, name = load_ratings(args)
        train = next(splits("holdout", lambda: ratings, seed=args.seed,
                            test_ratio=args.test_ratio)).train
        what = f"{name}, training part of a random {1 - args.test_ratio:g} split"
    print(f"tuning on {what}: {len(train)} ratings; study {args.study_name!r} in {args.study}")
    if fixed:
        print(f"fixed by your settings, not searched: {_shown(fixed)}")
    # a preset's value of a searched setting is a starting point, not fixed: say so (--preset
    # best's variant both was replaced by item or user without a word)
    searched = {name: value for name, value in PRESETS.get(args.preset or "", {}).items()
                if name in SEARCH_SPACE and name not in fixed}
    if searched:
        print(f"searched, not fixed (give them as options to fix them): --preset "
              f"{args.preset}'s {_shown(searched)}")

    def show(trial: Any) -> None:
        if args.quiet:
            return
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        print(f"trial {trial.number:3d}: {value}  {_shown(trial.params)}", flush=True)

    study = run_study(train, base_params=params, n_trials=args.trials, storage=args.study,
                      study_name=args.study_name, timeout=args.timeout,
                      random_state=args.seed, on_trial_end=show, fixed=tuple(fixed))
    # finished trials only: a pruned trial holds a value too (its last report)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:  # a failed search, not bad input: one line, status 1
        print(f"autorec tune: error: no trial finished ({len(study.trials)} pruned or failed: "
              "one that diverges is pruned, lower --lr or raise --l2; one that does not fit "
              "in memory too, fix a smaller --hidden)", file=sys.stderr)
        return 1
    ended = [t for t in study.trials if t.state.name in FINISHED]  # not failed or running
    print(f"top {min(args.top, len(complete))} of {len(ended)} trials by validation RMSE:")
    for trial in sorted(complete, key=lambda t: t.value)[:args.top]:
        print(f"  trial {trial.number:3d}  {trial.value:.4f}  {_shown(trial.params)}")
    # the seed too: train --config FILE then draws the same starting weights, and the same
    # split when given the same split options (not in the file: evaluate refuses them)
    text = best_config_toml({**params, "seed": args.seed}, study)
    atomic_write(args.out, lambda handle: handle.write(text))
    again = (f" --split {split}" if split != "random" else
             f" --test-ratio {args.test_ratio!r}" if args.test_ratio != 0.1 else "")  # exact:
    # rounded to 6 digits, 0.1016666333 held out another count of ratings
    print(f"wrote {args.out} (use it with --config {args.out}"
          + (f"; train on this search's split with{again}" if again else "") + ")")
    return 0


def _written_by_tune(path: Path) -> bool:
    """Whether ``path`` is absent or a file that ``tune`` wrote (its first line says so)."""
    if not path.exists():
        return True
    try:
        with open(path, "rb") as handle:
            return handle.readline().startswith(b"# autorec tune:")
    except OSError:
        return False


def _shown(params: dict[str, Any]) -> str:
    """``name=value, ...``, floats to three significant digits."""
    return ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in params.items())
