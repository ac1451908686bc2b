"""The package's shape (issue 13): no import circle, nothing below the estimator importing it,
one fitted-model object, and a family protocol that recommend / fold-in / serve go through."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import autorec
from autorec import AutoRec
from autorec.baseline import Biases
from autorec.data.ids import IdMap
from autorec.family import ScoringNetwork
from autorec.fitted import FittedModel, as_fitted
from autorec.fitting import fit
from autorec.params import DEFAULTS, complete

SRC = Path(autorec.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module -> the autorec modules it imports (anywhere in it: inside functions and
    ``TYPE_CHECKING`` blocks too)."""
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            found = []
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    anchor = base[:len(base) - node.level + 1]
                    module = ".".join(anchor + ([module] if module else []))
                if module.startswith("autorec"):
                    found = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules
                             else module for alias in node.names]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names if alias.name.startswith("autorec")]
            graph[name].update(t for t in map(resolve, found) if t and t != name)
    graph["autorec"] = set()  # the package's lazy exports are not a layer
    return graph


def test_no_import_circle() -> None:
    graph = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circle = [*stack[stack.index(target):], target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_nothing_below_the_estimator_imports_it() -> None:
    graph = _imports()
    above = {name for name in graph if name.startswith("autorec.cli")}
    importers = sorted(name for name, targets in graph.items()
                       if "autorec.estimator" in targets and name not in above)
    assert importers == []


def test_defaults_are_the_estimator_signature() -> None:
    signature = inspect.signature(AutoRec.__init__).parameters
    assert {name: p.default for name, p in signature.items() if name != "self"} == DEFAULTS
    assert list(signature)[1:] == list(DEFAULTS)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 400), rng.integers(0, 20, 400)
    table = pd.DataFrame({"user_id": users, "item_id": items,
                          "rating": rng.integers(1, 6, 400).astype(float)})
    return table.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)


PARAMS = {"hidden": 8, "epochs": 3, "random_state": 0, "device": "cpu", "validation": 0.1,
          "variant": "both"}


def test_fit_returns_the_fitted_model_the_estimator_holds(frame: pd.DataFrame) -> None:
    fitted = fit(PARAMS, frame)
    assert isinstance(fitted, FittedModel)
    assert fitted.params == complete(PARAMS)
    model = AutoRec(**PARAMS).fit(frame)
    assert isinstance(model.fitted_, FittedModel) and as_fitted(model) is model.fitted_
    assert model.users_ is model.fitted_.users and model.members_ is model.fitted_.members
    pairs = (frame.user_id.to_numpy(), frame.item_id.to_numpy())
    np.testing.assert_array_equal(fitted.predict(*pairs), model.predict(*pairs))
    assert fitted.validation_rmse == model.validation_rmse_
    assert fitted.best_epoch == model.best_epoch_


def test_learned_attributes_are_absent_before_fit() -> None:
    model = AutoRec()
    assert not hasattr(model, "users_") and not hasattr(model, "members_")
    with pytest.raises(autorec.NotFittedError):
        as_fitted(model)


def test_rating_networks_satisfy_the_protocol(frame: pd.DataFrame) -> None:
    fitted = fit(PARAMS, frame)
    users, items = np.arange(len(fitted.users)), np.arange(len(fitted.items))
    for member in fitted.members:
        assert isinstance(member, ScoringNetwork)
        block = torch.zeros((len(users), len(items)))
        member.score_block(users, items, block, 1.0)
        grid_users, grid_items = np.repeat(users, len(items)), np.tile(items, len(users))
        np.testing.assert_allclose(block.numpy().reshape(-1),
                                   member.predict_pairs(grid_users, grid_items), atol=1e-5)


class _ItemScores:
    """A second family: one score per item whatever the user (a popularity list)."""

    family = "test-item-scores"

    def __init__(self, scores: np.ndarray, seen: sp.csr_matrix) -> None:
        self.scores = scores
        self._seen = seen
        self.n_users, self.n_items = seen.shape
        self.device = torch.device("cpu")
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []

    def predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.scores[item_idx].astype(np.float64)

    def score_block(self, users: np.ndarray, items: np.ndarray, out: torch.Tensor,
                    weight: float) -> None:
        out += weight * torch.from_numpy(self.scores[items].astype(np.float32))[None, :]

    def seen(self) -> sp.csr_matrix:
        return self._seen

    def fold_in(self, side: str, index: np.ndarray, values: np.ndarray, targets: np.ndarray,
                reg: float) -> tuple[np.ndarray, Any]:
        return (self.scores.astype(np.float64) if side == "user"
                else np.zeros(self.n_users)), None

    def grow(self, side: str, index: np.ndarray, growth: Any) -> None:
        if side == "user":  # the newcomer's row of rated items
            self.n_users += 1
            row = sp.csr_matrix((np.ones(len(index)), (np.zeros(len(index), int), index)),
                                shape=(1, self.n_items))
            self._seen = sp.vstack([self._seen, row], format="csr")

    def describe(self) -> dict[str, Any]:
        return {"kind": "item scores"}

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}

    @property
    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_arrays(cls, arrays: Any, params: dict[str, Any], *, n_users: int, n_items: int,
                    device: torch.device) -> _ItemScores:
        raise NotImplementedError


def test_recommend_and_fold_in_go_through_the_protocol() -> None:
    """A fitted model holding a network of another family recommends, predicts and folds in
    without knowing what it holds."""
    seen = sp.csr_matrix(([1.0, 1.0], ([0, 1], [0, 2])), shape=(2, 3))
    network = _ItemScores(np.array([1.0, 2.0, 3.0]), seen)
    assert isinstance(network, ScoringNetwork)
    fitted = FittedModel(
        params=complete({"baseline": "none"}), users=IdMap(np.array([10, 11])),
        items=IdMap(np.array([7, 8, 9])), global_mean=2.0, rating_scale=(1.0, 5.0),
        biases=Biases(2.0, np.zeros(2), np.zeros(3), 1.0, 1.0), members=[network],
        blend=np.array([1.0, 0.5]))
    table = autorec.recommend.recommend(fitted, [10, 11], n=2)
    assert table["item_id"].tolist() == [9, 8, 8, 7]  # best first, seen items left out
    np.testing.assert_allclose(table["score"], [3.5, 2.5, 2.5, 1.5])
    np.testing.assert_allclose(fitted.predict([11], [8]), [2.5])
    result = autorec.foldin.fold_in(fitted, "user", {7: 4.0}, n=1, add=True, new_id=12)
    assert result.recommendations["item_id"].tolist() == [9]
    assert len(fitted.users) == 3 and network.n_users == 3
    # the items the newcomer rated are left out: the seen cache was keyed on the rating
    # network's matrix alone, and kept the two users' pattern for any other family
    assert autorec.recommend.recommend(fitted, [12], n=3)["item_id"].tolist() == [9, 8]


def test_persist_and_load_model(frame: pd.DataFrame, tmp_path: Path) -> None:
    fitted = fit(PARAMS, frame)
    autorec.persist.save_model(fitted, tmp_path / "m")
    loaded = autorec.persist.load_model(tmp_path / "m")
    assert isinstance(loaded, FittedModel)
    model = autorec.load_model(tmp_path / "m")
    assert isinstance(model, AutoRec) and model.get_params() == fitted.params
    pairs = (frame.user_id.to_numpy(), frame.item_id.to_numpy())
    np.testing.assert_array_equal(loaded.predict(*pairs), fitted.predict(*pairs))
    np.testing.assert_array_equal(model.predict(*pairs), fitted.predict(*pairs))

