"""The estimator's parameters as plain data: names, defaults, choices and their checks.

:class:`~autorec.estimator.AutoRec`'s signature and :data:`DEFAULTS` agree (a test holds them
together); the modules below the estimator read the parameters from a ``dict`` through this
one and never need the estimator itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .member import NetworkSpec
from .model import ACTIVATIONS
from .split import check_seed
from .train import OPTIMIZERS

__all__ = ["BASELINES", "COLD_POLICIES", "DEFAULTS", "PARAM_NAMES", "RANKINGS", "VARIANTS",
           "complete", "network_specs", "rating_scale", "validate_params"]

VARIANTS: tuple[str, ...] = ("item", "user", "both")
COLD_POLICIES: tuple[str, ...] = ("baseline", "mean", "midpoint")
BASELINES: tuple[str, ...] = ("biases", "none")
#: The ranking model fitted beside the rating networks (:mod:`autorec.ranking`): ``"auto"``
#: EASE (over the most-rated :data:`autorec.ranking.EASE_ITEM_LIMIT` items) blended with the
#: rating networks' predictions, ``"ease"`` / ``"vae"`` one model alone, ``"blend"`` every
#: component, ``"none"`` no ranking model (lists ranked by predicted rating).
RANKINGS: tuple[str, ...] = ("auto", "ease", "vae", "blend", "none")

#: Every parameter of :class:`~autorec.estimator.AutoRec` with its default, in signature order.
DEFAULTS: dict[str, Any] = {
    "variant": "item",
    "ensemble": 1,
    "hidden": 500,
    "activation": "sigmoid",
    "dropout": 0.05,
    "input_dropout": 0.25,
    "lr": 0.002,
    "weight_decay": 0.0,
    "l2": 100.0,
    "epochs": 200,
    "batch_size": 256,
    "optimizer": "auto",
    "baseline": "biases",
    "validation": 0.05,
    "patience": 10,
    "refit": True,
    "cold": "baseline",
    "random_state": None,
    "device": None,
    "dense_batches": False,
    "tf32": False,
    "ranking": "auto",
    "rating_scale": None,
}
PARAM_NAMES: tuple[str, ...] = tuple(DEFAULTS)


def complete(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over :data:`DEFAULTS`: every parameter, known names only."""
    return {name: params.get(name, default) for name, default in DEFAULTS.items()}


def validate_params(params: Mapping[str, Any]) -> None:
    """Check every parameter (``params`` over :data:`DEFAULTS`); ``ValueError`` names the
    first bad one."""
    p = complete(params)
    _choice("variant", p["variant"], VARIANTS)
    _choice("cold", p["cold"], COLD_POLICIES)
    _choice("activation", p["activation"], tuple(ACTIVATIONS))
    _choice("optimizer", p["optimizer"], OPTIMIZERS)
    _choice("baseline", p["baseline"], BASELINES)
    _choice("ranking", p["ranking"], RANKINGS)
    for name in ("ensemble", "hidden", "epochs", "batch_size", "patience"):
        value = p[name]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in ("dropout", "input_dropout", "validation"):
        value = p[name]
        if not (_is_number(value) and 0.0 <= value < 1.0):  # numpy's numbers too, as lr
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if not (_is_number(p["lr"]) and p["lr"] > 0):
        raise ValueError(f"lr must be a positive number, got {p['lr']!r}")
    if not (_is_number(p["weight_decay"]) and p["weight_decay"] >= 0):
        raise ValueError(f"weight_decay must be a number >= 0, got {p['weight_decay']!r}")
    l2_values = p["l2"] if isinstance(p["l2"], list | tuple) else [p["l2"]]
    if not l2_values or not all(_is_number(v) and v >= 0 for v in l2_values):
        raise ValueError(f"l2 must be a number >= 0 or a list of them, got {p['l2']!r}")
    if len(l2_values) > 1 and not p["validation"]:
        raise ValueError("l2 lists several values to choose from on validation: it needs "
                         "validation > 0")
    if p["weight_decay"] and p["optimizer"] not in ("adam", "auto"):
        raise ValueError(f"weight_decay is Adam's coupled L2 term (optimizer 'adam'); with "
                         f"optimizer {p['optimizer']!r} use l2")
    for name in ("refit", "dense_batches", "tf32"):
        if not isinstance(p[name], bool | np.bool_):  # numpy's too, as its integers elsewhere
            raise ValueError(f"{name} must be True or False, got {p[name]!r}")
    if p["dense_batches"] and p["optimizer"] == "lazy_adam":
        raise ValueError("dense_batches gives dense gradients: use optimizer 'adam' or "
                         "'rprop', not 'lazy_adam'")
    check_seed(p["random_state"])
    scale = p["rating_scale"]
    if scale is not None and not (isinstance(scale, list | tuple) and len(scale) == 2
                                  and all(map(_is_number, scale)) and scale[0] < scale[1]
                                  and max(map(abs, scale)) <= float(np.finfo(np.float32).max)):
        raise ValueError(f"rating_scale must be None or (low, high), two numbers with low < "
                         f"high (within float32's range), got {scale!r}")


def rating_scale(observed: tuple[float, float], given: Any, source: str
                 ) -> tuple[float, float]:
    """A model's rating scale: ``given`` (the ``rating_scale`` parameter, which must hold the
    ``observed`` training ratings' range), else that range."""
    if given is None:
        return observed
    low, high = float(given[0]), float(given[1])
    # as the ratings are stored (float32): a rating of 0.3 is stored a little above 0.3
    if np.float32(observed[0]) < np.float32(low) or np.float32(observed[1]) > np.float32(high):
        raise ValueError(f"{source}: ratings from {observed[0]:g} to {observed[1]:g} do not "
                         f"lie within rating_scale {low:g} to {high:g}")
    return low, high


def network_specs(params: Mapping[str, Any]) -> list[NetworkSpec]:
    """One spec per network the parameters ask for: per variant, ``ensemble`` of them."""
    p = complete(params)
    variants = ("item", "user") if p["variant"] == "both" else (p["variant"],)
    return [
        NetworkSpec(variant=variant, hidden=p["hidden"], activation=p["activation"],
                    dropout=p["dropout"], input_dropout=p["input_dropout"], lr=p["lr"],
                    weight_decay=p["weight_decay"], l2=0.0, batch_size=p["batch_size"],
                    optimizer=p["optimizer"], residual=p["baseline"] == "biases",
                    patience=p["patience"], dense_batches=p["dense_batches"])
        for variant in variants for _ in range(p["ensemble"])
    ]


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return False
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except OverflowError:  # an integer past float64's range
        return False


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:  # an array compared elementwise
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
