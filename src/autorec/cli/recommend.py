"""``autorec recommend``: the top-N items for some users, from a saved model, with titles."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any

from ._common import Outputs, data_folder, device_name, output_file, positive_int, write_csv
from .predict import check_csv_name


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "recommend",
        help="top-N items for users, from a saved model",
        description="Recommend N items to each user, ranked by the model's ranking model "
        "(by predicted rating for a model trained with --ranking none or saved before "
        "ranking models), leaving out the items the user rated in training (unless "
        "--include-seen). Prints one line per item: rank, item id, ranking score, predicted "
        "rating and title. A user the model does not "
        "know gets the items with the highest baseline (mean plus item bias), marked as a "
        "fallback. Titles come from --items FILE, or from the model's builtin data set when "
        "its item file is found locally (--data-dir, $AUTOREC_DATA_DIR, the download cache).",
    )
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="the model folder")
    parser.add_argument("--user", action="append", required=True, metavar="ID",
                        help="a raw user id as in the training data; repeat for several users "
                        "(an id that starts with '-' as --user=-x)")
    parser.add_argument("--n", type=positive_int, default=10, metavar="N",
                        help="items per user (default: %(default)s)")
    parser.add_argument("--items", type=Path, metavar="FILE",
                        help="item titles: CSV with item_id,title columns, or a MovieLens "
                        "u.item, movies.dat or movies.csv")
    parser.add_argument("--data-dir", type=data_folder, metavar="DIR",
                        help="folder holding builtin data sets, for their titles (default: "
                        "$AUTOREC_DATA_DIR)")
    parser.add_argument("--include-seen", action="store_true",
                        help="also recommend items the user rated in training")
    parser.add_argument("--output", type=output_file, metavar="FILE",
                        help="also write a CSV: user_id,rank,item_id,score,predicted_rating,"
                        "title,fallback; - "
                        "writes only that CSV, to standard output")
    parser.add_argument("--device", default="cpu", metavar="DEV", type=device_name,
                        help="cpu (default), cuda, cuda:N, or auto")
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.items import dataset_item_file, read_item_titles
    from ..estimator import load_model
    from ..persist import read_model_info

    if any(not user.strip(" \t") for user in args.user):
        args.parser_error("--user needs an id")
    outputs = Outputs()  # checked before the model is loaded (README: Bad input)
    outputs.input("--model", args.model, folder=True)
    outputs.input("--items", args.items)
    titles_file = args.items
    if titles_file is None:  # the builtin data set's item file, an input as well
        dataset = read_model_info(args.model).get("dataset")
        if isinstance(dataset, str):
            titles_file = dataset_item_file(dataset, args.data_dir)
            if titles_file is None and args.data_dir is not None:  # ignored without a word
                args.parser_error(f"--data-dir {args.data_dir} holds no copy of {dataset} "
                                  "with its item titles (nor does the download cache)")
            outputs.input("--data-dir", titles_file)
        elif args.data_dir is not None:  # it was ignored without a word
            args.parser_error(f"--data-dir finds a builtin data set's titles, and {args.model} "
                              "was not trained on one; give its titles with --items FILE")
    elif args.data_dir is not None:
        args.parser_error("--items gives the titles; --data-dir (a builtin data set's) would "
                          "be ignored")
    output = outputs.file("--output", args.output, stdout=True)
    check_csv_name(args, "--output", output)
    if args.output is None and sys.stdout is None:  # closed (>&-): nothing was shown
        raise OSError(errno.EBADF, "cannot show the recommendations: standard output is "
                                   "closed (give --output FILE)")
    to_stdout = args.output is not None and output is None
    device = None if args.device == "auto" else args.device
    model = load_model(args.model, device=device)
    titles = None if titles_file is None else read_item_titles(titles_file)

    # once each, in order; spaces and tabs stripped as the readers strip them (not every
    # Unicode space: "x\u00a0" is an id of its own)
    users = list(dict.fromkeys(user.strip(" \t") for user in args.user))
    table = model.recommend(users, n=args.n, exclude_seen=not args.include_seen)
    table["title"] = (titles.title_of(table["item_id"].to_numpy()) if titles is not None
                      else np.full(len(table), None, dtype=object))

    def shown(value: object) -> str:  # an id with a line break keeps its item on one line
        text = str(value)
        return text if text.isprintable() else repr(text)

    width = max([len(shown(item)) for item in table["item_id"]] + [4])
    for user in [] if to_stdout else users:  # with --output -: the CSV only
        rows = table[table["user_id"] == user]
        if not len(rows):
            note = " (no item left to recommend)"
        elif rows["fallback"].iloc[0]:
            note = " (unknown to the model: the items with the highest baseline, a fallback)"
        else:
            note = ""
        print(f"user {shown(user)}{note}:")
        for row in rows.itertuples(index=False):
            # no title (an item missing from the file: None, or NaN once in the table): nothing
            title = (f"  {shown(row.title)}" if isinstance(row.title, str) and row.title
                     else "")
            print(f"{row.rank:4d}  {shown(row.item_id):>{width}}  {row.score:.4f}  "
                  f"{row.predicted_rating:.2f}{title}")

    if args.output is not None:
        out = table[["user_id", "rank", "item_id", "score", "predicted_rating", "title",
                     "fallback"]].copy()
        out["fallback"] = np.where(out["fallback"], "true", "false")

        write_csv(out, output)
        if output is not None:
            print(f"wrote {len(out)} recommendations to {output}")
    return 0
