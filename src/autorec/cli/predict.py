"""``autorec predict``: ratings for the (user, item) pairs of a file, from a saved model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import Outputs, device_name, output_file, separator, write_csv


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="predict ratings for (user, item) pairs with a saved model",
        description="Read (user, item) pairs, predict their ratings with a model saved by "
        "'autorec train --save DIR' (or AutoRec.save), and write a CSV with the columns "
        "user_id,item_id,prediction,fallback. A pair whose user or item the model does not "
        "know gets the model's cold-start fallback and fallback=true.",
    )
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="the model folder")
    parser.add_argument("--input", type=Path, required=True, metavar="FILE",
                        help="pairs: CSV/TSV/'::'/Parquet with user_id and item_id columns "
                        "(others are ignored), perhaps compressed")
    parser.add_argument("--output", type=output_file, required=True, metavar="FILE",
                        help="predictions CSV, written atomically; - for standard output "
                        "(the summary line then goes to standard error)")
    parser.add_argument("--sep", type=separator, metavar="SEP",
                        help="field separator of --input: one character, '::' or 'tab' "
                        "(default: from extension)")
    parser.add_argument("--no-header", action="store_true",
                        help="--input has no header line (user and item are its first fields)")
    parser.add_argument("--columns", metavar="USER,ITEM",
                        help="user and item column names of --input's header (default: "
                        "user_id,item_id)")
    parser.add_argument("--device", default="cpu", metavar="DEV", type=device_name,
                        help="cpu (default), cuda, cuda:N, or auto")
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from ..data.readers import read_pairs
    from ..estimator import load_model

    if args.no_header and args.columns is not None:
        args.parser_error("--columns names header columns; with --no-header the user and item "
                          "are the first two fields")
    text = "user_id,item_id" if args.columns is None else args.columns  # "" is refused
    columns = [column.strip() for column in text.split(",")]
    if len(columns) != 2 or not all(columns):
        args.parser_error(f"--columns needs two names separated by a comma, got {text!r}")
    if columns[0] == columns[1]:
        args.parser_error(f"--columns names the user and the item columns, two different ones, "
                          f"got {text!r}")
    outputs = Outputs()  # checked before the model is loaded (README: Bad input)
    outputs.input("--model", args.model, folder=True)
    outputs.input("--input", args.input)
    output = outputs.file("--output", args.output, stdout=True)
    check_csv_name(args, "--output", output)
    device = None if args.device == "auto" else args.device
    model = load_model(args.model, device=device)
    user_ids, item_ids = read_pairs(args.input, sep=args.sep, header=not args.no_header,
                                    columns=columns)
    # the ids are read and checked (id_column): each distinct one is looked up once (mapping
    # every pair's took about 450 bytes a pair of string ids)
    fitted = model.fitted_
    indices = [ids.to_index(uniques)[codes] for ids, (codes, uniques) in
               ((fitted.users, pd.factorize(user_ids)), (fitted.items, pd.factorize(item_ids)))]
    predicted, cold = fitted.predict_index(*indices)
    frame = pd.DataFrame({
        "user_id": user_ids.to_numpy(),
        "item_id": item_ids.to_numpy(),
        "prediction": predicted,
        "fallback": np.where(cold, "true", "false"),
    }, copy=False)

    write_csv(frame, output)
    print(f"wrote {len(frame)} predictions to {'standard output' if output is None else output}"
          f" ({int(cold.sum())} fallback: user or item unknown to the model, predicted by its "
          f"cold policy {model.cold!r})", file=sys.stdout if output is not None else sys.stderr)
    return 0


#: Names whose readers expect another format than the plain CSV text written.
_OTHER_FORMATS = (".gz", ".bz2", ".xz", ".zip", ".parquet", ".pq")


def check_csv_name(args: argparse.Namespace, option: str, path: Path | None) -> None:
    """Refuse an output named as compressed or Parquet: plain CSV went into it without a
    word, and autorec's own readers then refused the file."""
    if path is not None and path.suffix.lower() in _OTHER_FORMATS:
        args.parser_error(f"{option} {path}: the output is plain CSV text, not "
                          f"{path.suffix.lower()[1:]}; give it a .csv name")
