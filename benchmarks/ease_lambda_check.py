"""Which lambda EASE gets, and what it scores on the test part, depending on the validation
part that chooses it (CiaoDVD, one seed): the EASE peer of ``ranking.py`` (binary, 10 %
part, every item) against the default's EASE-only ranking model (``fit_ranking(train,
components=["ease"])``: its own 10 % part, weighting and lambda chosen on the 5,000 most-rated
items). Test NDCG@10 by ``evaluate_scores``, the protocol of ``ranking.py``'s EASE row.

    python benchmarks/ease_lambda_check.py --seed 2
"""

from __future__ import annotations

import argparse

from _common import default_data_dir, load
from ranking import ease_peer, splits_for

from autorec.ranking.protocol import evaluate_scores, implicit_matrix
from autorec.ranking.select import fit_ranking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ciaodvd")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()
    ratings = load(args.dataset, data_dir)
    train, test = splits_for(args.dataset, ratings, [args.seed], data_dir)[f"seed{args.seed}"]
    scale = train.rating_scale()
    seen = implicit_matrix(train, "binary", scale)
    rows = train.to_csr("user")
    peer, info = ease_peer(train, args.seed, 20_000)
    ndcg = evaluate_scores(lambda u: peer.score(seen[u]), seen, test, rating_scale=scale)
    print(f"EASE peer: lambda {info['lam']:g}, test NDCG@10 {ndcg['ndcg@10']:.4f}")
    model, report = fit_ranking(train, components=["ease"], random_state=args.seed)
    ndcg = evaluate_scores(lambda u: model.score(rows[u]), seen, test, rating_scale=scale)
    print(f"default's EASE alone: {report['ease']['weighting']} rows, lambda "
          f"{report['ease']['lam']:g}, test NDCG@10 {ndcg['ndcg@10']:.4f}")


if __name__ == "__main__":
    main()
