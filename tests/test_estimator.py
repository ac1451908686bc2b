"""The AutoRec estimator: parameters, validation, fitting, prediction on raw ids, cold start."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autorec import AutoRec, NotFittedError, Ratings, load_dataset, random_split, rmse
from autorec.config import PRESETS

#: The reference recipe (no validation, no baseline), small and quick: the mechanics of fitting
#: and predicting. tests/test_selection.py covers validation, early stopping and baselines.
FAST = {**PRESETS["reference"], "hidden": 16, "epochs": 5, "lr": 0.03, "batch_size": 16,
        "device": "cpu"}


def fast(**params) -> AutoRec:
    return AutoRec(**{**FAST, "random_state": 0, **params})


# -- parameters -----------------------------------------------------------------------------------
def test_get_set_params_round_trip() -> None:
    model = AutoRec(variant="user", hidden=17, dropout=0.1, random_state=5)
    params = model.get_params()
    assert params["variant"] == "user" and params["hidden"] == 17
    assert params["random_state"] == 5 and params["lr"] == 0.002  # defaults included
    assert AutoRec(**params).get_params() == params
    assert set(params) == {"variant", "ensemble", "hidden", "activation", "dropout",
                           "input_dropout", "lr", "weight_decay", "l2", "epochs", "batch_size",
                           "optimizer", "baseline", "validation", "patience", "refit", "cold",
                           "random_state", "device", "dense_batches", "tf32", "ranking",
                           "rating_scale"}

    other = AutoRec()
    assert other.set_params(**params) is other
    assert other.get_params() == params
    other.set_params(hidden=3)
    assert other.get_params()["hidden"] == 3
    assert params["hidden"] == 17  # get_params returned a copy


def test_set_params_unknown_name() -> None:
    model = AutoRec()
    with pytest.raises(ValueError, match="hiden"):
        model.set_params(hiden=3)
    assert model.hidden == 500


@pytest.mark.parametrize(
    ("name", "value"),
    [("variant", "x"), ("cold", "x"), ("hidden", 0), ("dropout", 1.0), ("lr", -1),
     ("activation", "softmax"), ("epochs", 0), ("batch_size", -2), ("hidden", 2.5),
     ("weight_decay", -1.0), ("lr", float("nan")), ("random_state", "seed"),
     ("random_state", -1), ("ensemble", 0), ("input_dropout", 1.0), ("l2", -1.0),
     ("l2", [1.0, "x"]), ("optimizer", "sgd"), ("baseline", "mf"), ("validation", 1.0),
     ("patience", 0), ("refit", "yes"), ("dense_batches", "yes"), ("tf32", 1)],
)
def test_invalid_params_raise_at_fit_naming_parameter(low_rank: Ratings, name: str, value
                                                     ) -> None:
    model = AutoRec(**{**FAST, name: value})  # the constructor only stores
    assert getattr(model, name) is value
    with pytest.raises(ValueError, match=name):
        model.fit(low_rank)
    assert not hasattr(model, "members_")


def test_predict_before_fit() -> None:
    model = AutoRec()
    with pytest.raises(NotFittedError):
        model.predict([1], [2])
    with pytest.raises(NotFittedError):
        model.evaluate(pd.DataFrame({"user_id": [1], "item_id": [2], "rating": [3.0]}))
    assert issubclass(NotFittedError, ValueError)


def test_fit_returns_self_and_sets_state(low_rank: Ratings) -> None:
    model = fast()
    assert model.fit(low_rank) is model
    assert [entry["epoch"] for entry in model.history_] == [1, 2, 3, 4, 5]
    assert len(model.users_) == 40 and len(model.items_) == 30
    assert model.global_mean_ == pytest.approx(float(np.mean(low_rank.rating, dtype=np.float64)))
    assert model.rating_scale_ == low_rank.rating_scale()


# -- predictions ----------------------------------------------------------------------------------
def test_predictions_clipped_to_training_scale(low_rank: Ratings) -> None:
    model = fast().fit(low_rank)
    low, high = model.rating_scale_
    users, items = low_rank.user_ids, low_rank.item_ids
    predicted = model.predict(users, items)
    assert np.all((predicted >= low) & (predicted <= high))
    # push every reconstruction far outside the scale: predictions sit on its bounds
    with torch.no_grad():
        model.members_[0].net.decoder_bias.add_(100.0)
    assert np.all(model.predict(users, items) == high)
    with torch.no_grad():
        model.members_[0].net.decoder_bias.sub_(200.0)
    assert np.all(model.predict(users, items) == low)


def test_predictions_clipped_on_other_scale() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": np.repeat(np.arange(10), 5),
                          "item_id": np.tile(np.arange(5), 10),
                          "rating": rng.integers(20, 81, 50).astype(float)})
    model = fast(epochs=1).fit(frame)
    low, high = float(frame.rating.min()), float(frame.rating.max())
    assert model.rating_scale_ == (low, high)
    predicted = model.predict(frame.user_id, frame.item_id)
    assert np.all((predicted >= low) & (predicted <= high))
    # one epoch from tiny weights cannot reach the ratings' level: many hit the lower bound
    assert np.any(predicted == low)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_ratings_near_the_accepted_limit_train_like_small_ones(low_rank: Ratings) -> None:
    """Ratings up to 1.8e19 are accepted; past about 1e17 the network's scale (the ratings'
    standard deviation, summed in float32) overflowed and the fit "diverged"."""
    frame = low_rank.to_dataframe()
    scores = []
    for factor in (1.0, 3e18):
        model = AutoRec(hidden=8, epochs=3, random_state=0, device="cpu", ranking="none"
                        ).fit(frame.assign(rating=frame.rating * factor))
        predicted = model.predict(frame.user_id, frame.item_id) / factor
        assert np.isfinite(predicted).all()
        scores.append(rmse(predicted, frame.rating.to_numpy()))
    assert scores[1] == pytest.approx(scores[0], rel=1e-4)


COLD_TRAIN = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"],
                           "item_id": ["x", "y", "x", "z", "y"],
                           "rating": [1.0, 2.0, 2.0, 5.0, 1.0]})  # mean 2.2, midpoint 3


@pytest.mark.parametrize(("cold", "expected"), [("mean", 2.2), ("midpoint", 3.0)])
def test_cold_pairs(cold: str, expected: float) -> None:
    model = fast(cold=cold).fit(COLD_TRAIN)
    users = ["a", "zz", "b", "a", "new", "c"]
    items = ["y", "x", "nope", "z", "nope", "x"]
    predicted, is_cold = model.predict(users, items, return_cold=True)
    assert is_cold.tolist() == [False, True, True, False, True, False]
    assert predicted[is_cold] == pytest.approx([expected] * 3)
    assert model.cold_value() == pytest.approx(expected)
    # warm pairs (including (a, z) never rated in training) come from the network
    assert not np.allclose(predicted[~is_cold], expected)
    assert model.predict(users, items).tolist() == predicted.tolist()


def test_users_without_training_ratings_are_cold(low_rank: Ratings) -> None:
    """After a split, ids in the shared id map but absent from training are cold."""
    keep = low_rank.user_idx != 0
    train, test = low_rank.subset(keep), low_rank.subset(~keep)
    model = fast().fit(train)
    assert low_rank.users.raw_ids[0] not in model.users_
    predicted, is_cold = model.predict(test.user_ids, test.item_ids, return_cold=True)
    assert is_cold.all()
    assert np.all(predicted == model.global_mean_)
    result = model.evaluate(test)
    assert result["n_cold"] == len(test) and result["n"] == len(test)



def test_ids_without_training_ratings_change_nothing_but_the_id_maps(low_rank: Ratings) -> None:
    """Fitting on ratings whose id maps hold users and items without a training rating (the
    columns re-numbered on the fly, never held) gives the model of the same ratings on maps
    of only the rated ids, default settings (validation, baseline, refit, ranking)."""
    drop_user, drop_item = low_rank.user_idx == 3, low_rank.item_idx == 5
    train = low_rank.subset(~(drop_user | drop_item))
    users = np.unique(train.user_idx)
    items = np.unique(train.item_idx)
    assert len(users) < train.n_users and len(items) < train.n_items
    compact = Ratings(np.searchsorted(users, train.user_idx),
                      np.searchsorted(items, train.item_idx), train.rating,
                      type(train.users)(train.users.to_raw(users)),
                      type(train.items)(train.items.to_raw(items)))
    params = {"hidden": 16, "epochs": 4, "random_state": 0, "device": "cpu"}
    sparse_maps, dense_maps = AutoRec(**params).fit(train), AutoRec(**params).fit(compact)
    assert list(sparse_maps.users_.raw_ids) == list(dense_maps.users_.raw_ids)
    assert list(sparse_maps.items_.raw_ids) == list(dense_maps.items_.raw_ids)
    np.testing.assert_array_equal(sparse_maps.predict(low_rank.user_ids, low_rank.item_ids),
                                  dense_maps.predict(low_rank.user_ids, low_rank.item_ids))

def test_same_seed_identical_different_seed_different(low_rank: Ratings) -> None:
    users, items = low_rank.user_ids, low_rank.item_ids
    params = {"hidden": 32, "epochs": 10, "dropout": 0.2}
    first = fast(random_state=11, **params).fit(low_rank).predict(users, items)
    again = fast(random_state=11, **params).fit(low_rank).predict(users, items)
    other = fast(random_state=12, **params).fit(low_rank).predict(users, items)
    assert np.ptp(first) > 0.1  # not all clipped to one bound
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("variant", ["item", "user"])
def test_variants_learn(low_rank: Ratings, variant: str) -> None:
    model = fast(variant=variant, hidden=32, epochs=30).fit(low_rank)
    expected_inputs = 40 if variant == "item" else 30  # users per item row / items per user row
    assert model.members_[0].net.n_inputs == expected_inputs
    assert model.members_[0].matrix.shape == ((30, 40) if variant == "item" else (40, 30))
    losses = [entry["train_loss"] for entry in model.history_]
    assert losses[-1] < 0.5 * losses[0]
    predicted = model.predict(low_rank.user_ids, low_rank.item_ids)
    baseline = rmse(low_rank.rating, np.full(len(low_rank), model.global_mean_))
    assert rmse(low_rank.rating, predicted) < 0.9 * baseline


def test_dataframe_with_string_ids() -> None:
    rng = np.random.default_rng(1)
    users = [f"user-{k}" for k in range(12)]
    items = [f"film {k}" for k in range(9)]
    pairs = [(u, i) for u in users for i in items if rng.random() < 0.6]
    frame = pd.DataFrame({"user_id": [u for u, _ in pairs], "item_id": [i for _, i in pairs],
                          "rating": rng.integers(1, 6, len(pairs)).astype(float)})
    model = fast().fit(frame)
    assert set(model.users_.raw_ids.tolist()) == set(frame.user_id)
    assert set(model.items_.raw_ids.tolist()) == set(frame.item_id)
    predicted, is_cold = model.predict(["user-3", "user-3", "ghost"],
                                       ["film 2", "film 8", "film 2"], return_cold=True)
    assert is_cold.tolist() == [False, False, True]
    assert np.all(np.isfinite(predicted))
    result = model.evaluate(frame)
    assert result["n"] == len(frame) and result["n_cold"] == 0


def test_evaluate_equals_predict_and_ignores_test_ratings(low_rank: Ratings) -> None:
    from autorec import mae

    train, test = random_split(low_rank, 0.3, random_state=0)
    model = fast().fit(train)
    predicted, is_cold = model.predict(test.user_ids, test.item_ids, return_cold=True)
    result = model.evaluate(test)
    assert result["rmse"] == rmse(test.rating, predicted)
    assert result["mae"] == mae(test.rating, predicted)
    assert result["n"] == len(test) and result["n_cold"] == int(is_cold.sum())

    # test ratings are only scored, never fed to the reconstruction
    fake = Ratings(test.user_idx, test.item_idx, np.full(len(test), 1.0, dtype=np.float32),
                   test.users, test.items)
    assert model.evaluate(fake)["rmse"] == rmse(fake.rating, predicted)
    assert np.array_equal(model.predict(test.user_ids, test.item_ids), predicted)


def test_eval_set_is_reported_not_used(low_rank: Ratings) -> None:
    train, test = random_split(low_rank, 0.3, random_state=0)
    seen: list[dict] = []
    with_eval = fast().fit(train, eval_set=test, on_epoch_end=seen.append)
    without = fast().fit(train)
    users, items = test.user_ids, test.item_ids
    assert np.array_equal(with_eval.predict(users, items), without.predict(users, items))
    assert seen == with_eval.history_
    assert with_eval.history_[-1]["eval_rmse"] == pytest.approx(with_eval.evaluate(test)["rmse"])
    assert "eval_rmse" not in without.history_[-1]


def test_predict_length_mismatch(low_rank: Ratings) -> None:
    model = fast(epochs=1).fit(low_rank)
    with pytest.raises(ValueError, match="length"):
        model.predict([100, 101], [1000])


# -- real data ------------------------------------------------------------------------------------
@pytest.mark.real_data
def test_i_autorec_ml100k(ml100k_dir: Path) -> None:
    ratings = load_dataset("ml-100k", ml100k_dir, download=False)
    train, test = random_split(ratings, test_ratio=0.1, random_state=0)
    model = AutoRec(**PRESETS["reference"], random_state=0, device="cpu").fit(train)
    result = model.evaluate(test)
    assert result["rmse"] < 0.93, result
    assert result["n"] == 10_000
    assert isinstance(result["n_cold"], int) and 0 <= result["n_cold"] < 100
    assert result["mae"] < result["rmse"]


@pytest.mark.real_data
def test_u_autorec_ml100k(ml100k_dir: Path) -> None:
    ratings = load_dataset("ml-100k", ml100k_dir, download=False)
    train, test = random_split(ratings, test_ratio=0.1, random_state=0)
    model = AutoRec(**{**PRESETS["reference"], "variant": "user", "epochs": 5},
                    random_state=0, device="cpu").fit(train)
    result = model.evaluate(test)
    assert math.isfinite(result["rmse"]) and result["rmse"] < 2.0, result
    assert result["n_cold"] >= 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu(low_rank: Ratings) -> None:
    """Same seed, no dropout (whose masks come from device-specific generators): the CUDA
    kernels (cuSPARSE SpMM/SDDMM) train to the same model as the CPU ones."""
    users, items = low_rank.user_ids, low_rank.item_ids
    cpu = fast(dropout=0.0, device="cpu").fit(low_rank).predict(users, items)
    gpu = fast(dropout=0.0, device="cuda").fit(low_rank).predict(users, items)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)


def test_dense_batches_train_the_same_model(low_rank: Ratings) -> None:
    """The GPU-oriented dense-batch path gives the sparse path's model (CPU, float32)."""
    users, items = low_rank.user_ids, low_rank.item_ids
    params = {"optimizer": "adam", "dropout": 0.0}
    sparse = fast(**params).fit(low_rank).predict(users, items)
    dense = fast(**params, dense_batches=True).fit(low_rank).predict(users, items)
    np.testing.assert_allclose(dense, sparse, atol=1e-4)
    with pytest.raises(ValueError, match="dense_batches"):
        fast(optimizer="lazy_adam", weight_decay=0.0, dense_batches=True).fit(low_rank)


@pytest.mark.parametrize("ranking", ["ease", "vae", "blend"])
def test_a_fit_leaves_torchs_global_generator_alone(low_rank: Ratings, ranking: str) -> None:
    """README: one seed drives the fit through its own generators, no global torch seed is
    touched; Mult-VAE's layers drew their (then overwritten) first weights from the global
    generator, so the caller's own random stream depended on the ranking option."""
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    fast(random_state=0, hidden=8, epochs=2, ranking=ranking).fit(low_rank)
    assert torch.equal(torch.rand(4), expected)


def test_numpy_numbers_are_parameters_like_python_ones(low_rank: Ratings) -> None:
    """A parameter given as a numpy number is checked like a Python one (dropout, validation
    as NumPy floats were refused as outside [0, 1) while lr was accepted), and repr never
    raises (an array parameter made it fail with "truth value of an array is ambiguous")."""
    params = {"dropout": np.float32(0.25), "validation": np.float64(0.2), "lr": np.float32(0.01)}
    as_numpy = fast(random_state=0, hidden=8, epochs=2, ranking="none", **params)
    as_python = fast(random_state=0, hidden=8, epochs=2, ranking="none",
                     **{k: float(v) for k, v in params.items()})
    users, items = low_rank.user_ids, low_rank.item_ids
    np.testing.assert_allclose(as_numpy.fit(low_rank).predict(users, items),
                               as_python.fit(low_rank).predict(users, items), rtol=0, atol=1e-5)
    for bad in (np.float32(1.0), np.float64(np.nan), np.float32(-0.1)):
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
            fast(dropout=bad).fit(low_rank)
    shown = repr(AutoRec(l2=np.array([1.0, 10.0]), hidden=np.int64(7)))
    assert "l2=array([ 1., 10.])" in shown and "hidden=np.int64(7)" in shown


def test_one_rating_is_refused_with_the_reason() -> None:
    """The validation part of one rating was empty, and the fit stopped in the RMSE of zero
    ratings; now it names the cause (and fits with validation=0)."""
    one = pd.DataFrame({"user_id": [1], "item_id": [1], "rating": [4.0]})
    with pytest.raises(ValueError, match="need at least 2 training ratings to hold some out "
                                         "for validation, got 1 \\(validation=0 with "
                                         "ranking='none' fits on all: --validation 0 "
                                         "--ranking none on the command line\\)"):
        AutoRec(hidden=4, epochs=1, device="cpu").fit(one)
    # the hint said validation=0 alone, which the ranking model's own part then refused
    with pytest.raises(ValueError, match="ranking model to hold some out, got 1 "
                                         "\\(ranking='none' needs none: --ranking none "
                                         "on the command line\\)"):
        AutoRec(hidden=4, epochs=1, device="cpu", validation=0).fit(one)
    AutoRec(hidden=4, epochs=1, device="cpu", validation=0, ranking="none").fit(one)


def test_the_refit_keeps_the_update_its_epochs_were_chosen_with(low_rank: Ratings,
                                                                monkeypatch) -> None:
    """optimizer 'auto' was decided again on the refit's larger matrix: the epochs chosen
    for lazy Adam were trained with dense Adam (on data near the 90 % share), and the model
    recorded that one. The refit takes the selection's choice."""
    from autorec import member as member_module

    chosen = iter(["lazy_adam", "adam", "adam"])
    asked: list[str] = []

    def choose(name, *args, **kwargs):
        asked.append(name)
        return next(chosen)

    monkeypatch.setattr(member_module, "choose_optimizer", choose)
    model = fast(random_state=0, hidden=8, epochs=3, refit=True, ranking="none",
                 optimizer="auto", weight_decay=0.0, validation=0.2).fit(low_rank)
    assert asked == ["auto"]  # the selection's network only
    assert [m.optimizer for m in model.members_] == ["lazy_adam"]


def test_torchs_default_dtype_changes_nothing(low_rank: Ratings) -> None:
    """With torch.set_default_dtype(torch.float64) in the user's session, fit failed
    ("expected scalar type Double but found Float"), and so did predict and recommend of a
    loaded model: weights, codes and masks took the default dtype, batches are float32."""
    users, items = low_rank.user_ids, low_rank.item_ids
    params = {"random_state": 0, "hidden": 8, "epochs": 3, "dropout": 0.2,
              "ranking": "blend", "validation": 0.2}
    expected = fast(**params).fit(low_rank)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = fast(**params).fit(low_rank)
        predicted = model.predict(users, items)
        lists = model.recommend(model.users_.raw_ids[:5], n=3)
    finally:
        torch.set_default_dtype(before)
    np.testing.assert_array_equal(predicted, expected.predict(users, items))
    assert lists["item_id"].tolist() == expected.recommend(
        expected.users_.raw_ids[:5], n=3)["item_id"].tolist()


def test_ids_given_as_frames_and_arrays_of_every_shape(low_rank, tmp_path) -> None:
    """Iterating a DataFrame gives its column names: a one-column frame was looked up as the
    single id 'user_id' (one cold prediction for five pairs); a 0-d array was called a list."""
    frame = low_rank.to_dataframe()
    model = AutoRec(hidden=4, epochs=1, random_state=0, device="cpu").fit(frame)
    pairs = frame.head(5)
    expected = model.predict(pairs["user_id"], pairs["item_id"])
    np.testing.assert_array_equal(model.predict(pairs[["user_id"]], pairs[["item_id"]]),
                                  expected)
    with pytest.raises(ValueError, match="a table of 2 columns"):
        model.predict(pairs[["user_id", "item_id"]], pairs["item_id"])
    user, item = pairs["user_id"].iloc[0], pairs["item_id"].iloc[0]
    np.testing.assert_array_equal(model.predict(np.array(user), np.array(item)), expected[:1])
    # a torch.device parameter is written as its text, and the model loads
    model.set_params(device=torch.device("cpu")).fit(frame)
    loaded = AutoRec.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(pairs["user_id"], pairs["item_id"]),
                                  model.predict(pairs["user_id"], pairs["item_id"]))


def test_a_column_named_twice_and_arrow_dictionary_ids(low_rank) -> None:
    from autorec import from_dataframe
    from autorec.exceptions import DataError

    frame = low_rank.to_dataframe()
    twice = frame.assign(extra=frame["user_id"])
    twice.columns = ["user_id", "item_id", "rating", "user_id"]
    with pytest.raises(DataError, match="2 columns have this name"):
        from_dataframe(twice)
    # text ids dictionary-encoded by pyarrow (a Parquet category read with the pyarrow
    # backend) are read as pandas' own categories are
    texts = frame.assign(user_id="u" + frame["user_id"].astype(str))
    import pyarrow as pa

    arrow = texts.assign(user_id=texts["user_id"].astype(
        pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))))
    assert list(from_dataframe(arrow).users) == list(from_dataframe(texts).users)


def test_weights_that_blow_up_after_the_last_step_are_a_divergence() -> None:
    """With one batch an epoch every loss is taken before its step, so a huge learning rate
    gave finite losses and a NaN validation RMSE: the untrained network was kept and the run
    ended with status 0. A validation RMSE that is not finite is a divergence now."""
    from autorec.exceptions import TrainingError

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 30, 400), "item_id": rng.integers(0, 20, 400),
                          "rating": rng.integers(1, 6, 400).astype(float)}).drop_duplicates(
                              ["user_id", "item_id"])
    with pytest.raises(TrainingError, match="diverged in epoch 1: the validation RMSE "
                                            "became nan"):
        AutoRec(hidden=8, epochs=1, lr=1e308, ranking="none", device="cpu",
                random_state=0).fit(frame)


def test_a_choice_given_as_an_array_is_refused_at_fit(low_rank: Ratings) -> None:
    """np.array(["item"]) passed the check (compared elementwise) and made a model that
    load_model refused; two elements gave numpy's "truth value ... ambiguous"."""
    for value in (np.array(["item"]), np.array(["item", "user"])):
        with pytest.raises(ValueError, match="variant must be one of item, user, both"):
            AutoRec(variant=value, hidden=4, epochs=1, device="cpu").fit(low_rank)


def test_ratings_that_are_not_finite_are_named_not_a_divergence() -> None:
    """Ratings.from_arrays takes its arrays as valid: a NaN rating trained into "training
    diverged ...: lower the learning rate"."""
    ratings = Ratings.from_arrays([1, 2, 3, 1], [1, 1, 2, 2], [4.0, np.nan, 3.0, 2.0])
    with pytest.raises(ValueError, match=r"rating 1 is nan, not a finite number"):
        AutoRec(hidden=4, epochs=1, device="cpu", random_state=0).fit(ratings)


def test_epoch_seconds_count_every_l2_value_and_the_refit(low_rank: Ratings) -> None:
    """train_seconds ("in training epochs") summed the kept l2 value's selection epochs only:
    the other values' epochs and the refit's were left out."""
    seen: list[dict] = []
    model = AutoRec(hidden=8, epochs=3, patience=10, l2=[1.0, 10.0], random_state=0,
                    device="cpu", ranking="none").fit(low_rank, on_epoch_end=seen.append)
    assert len(seen) == 2 * len(model.history_)  # both values' epochs reported
    assert model.best_epoch_ > 0  # so the refit trains
    reported = sum(entry["seconds"] for entry in seen)
    assert model.epoch_seconds_ > reported > sum(entry["seconds"] for entry in model.history_)


def test_a_validation_part_too_small_for_the_blend_averages_the_networks() -> None:
    """Least squares with more coefficients than validation ratings: the intercept alone
    fitted the one held-out rating and moved every prediction by 1.25."""
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [4.0, 3.0, 5.0]})
    model = AutoRec(hidden=4, epochs=2, random_state=0, device="cpu", ranking="none",
                    variant="both", ensemble=2).fit(frame)
    assert model.blend_.tolist() == [0.25, 0.25, 0.25, 0.25, 0.0]


def test_presets_are_copied_and_numpy_booleans_taken() -> None:
    """resolve_params("paper") handed out the preset's own l2 list (an edit changed the
    preset for the whole process); np.True_ was refused for refit, dense_batches and tf32
    (a scikit-learn grid over np.array([True, False]) failed)."""
    from autorec.config import resolve_params

    grid = list(PRESETS["paper"]["l2"])
    resolve_params("paper")["l2"].append(7.0)
    assert PRESETS["paper"]["l2"] == grid
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": [1, 2, 1, 2],
                          "rating": [4.0, 3.0, 5.0, 2.0]})
    flags = {"refit": np.True_, "dense_batches": np.False_, "tf32": np.True_}
    model = AutoRec(hidden=4, epochs=1, validation=0.0, ranking="none", random_state=0,
                    **flags).fit(frame)
    plain = AutoRec(hidden=4, epochs=1, validation=0.0, ranking="none", random_state=0,
                    refit=True, dense_batches=False, tf32=True).fit(frame)
    np.testing.assert_array_equal(model.predict(["a"], [1]), plain.predict(["a"], [1]))


def test_a_bad_eval_set_is_named_as_such() -> None:
    """It gave '<DataFrame>, field 'rating': missing column', the training data's words."""
    from autorec import DataError

    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": [1, 2, 1, 2],
                          "rating": [4.0, 3.0, 5.0, 2.0]})
    with pytest.raises(DataError, match=r"^<eval_set DataFrame>, field 'rating': missing"):
        AutoRec(hidden=4, epochs=1, validation=0.0, ranking="none").fit(
            frame, eval_set=frame.rename(columns={"rating": "score"}))


def test_a_declared_rating_scale_clips_takes_fold_ins_and_round_trips(tmp_path: Path) -> None:
    """Jester's scale is -10..10 but its training ratings end at -9.95 and 9.9: fold-in
    refused a rating of 10 and the midpoint was -0.025. rating_scale declares the scale."""
    from autorec.persist import read_model_info

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 30, 400), "item_id": rng.integers(0, 20, 400),
                          "rating": rng.uniform(-9.9, 9.9, 400).round(2)}
                         ).drop_duplicates(["user_id", "item_id"])
    observed = AutoRec(hidden=4, epochs=1, random_state=0, ranking="none").fit(frame)
    assert observed.rating_scale_[1] < 10.0
    with pytest.raises(ValueError, match="outside the model's rating scale"):
        observed.fold_in_user({0: 10.0})
    model = AutoRec(hidden=4, epochs=1, random_state=0, cold="midpoint",
                    rating_scale=(-10, 10)).fit(frame)
    assert model.rating_scale_ == (-10.0, 10.0)
    assert model.predict([999], [0]).tolist() == [0.0]  # the scale's midpoint
    assert model.fold_in_user({0: 10.0, 1: -10.0}, n=3).n_ratings == 2
    # the same networks as without it: only the scale differs (clipping at its ends)
    np.testing.assert_allclose(model.predict([0, 1], [0, 1]),
                               observed.predict([0, 1], [0, 1]), atol=1e-6)
    loaded = AutoRec.load(model.save(tmp_path / "m"))
    assert loaded.rating_scale_ == (-10.0, 10.0) and loaded.rating_scale == [-10, 10]
    assert read_model_info(tmp_path / "m")["rating_scale"] == [-10.0, 10.0]
    with pytest.raises(ValueError, match=r"ratings from -9\.\d+ to 9\.\d+ do not lie within "
                                         r"rating_scale -5 to 5"):
        AutoRec(hidden=4, epochs=1, rating_scale=(-5, 5)).fit(frame)
    for bad in [(10, -10), (1,), "1,5", (0, float("inf")), (True, 5)]:
        with pytest.raises(ValueError, match="rating_scale must be None or"):
            AutoRec(rating_scale=bad).fit(frame)
    # ends compared as the ratings are stored (float32: 0.3 is stored a little above 0.3)
    tenths = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [1, 2, 1, 2, 1, 2],
                           "rating": [0.1, 0.3, 0.2, 0.3, 0.1, 0.2]})
    fitted = AutoRec(hidden=4, epochs=1, validation=0.0, ranking="none",
                     rating_scale=(0.1, 0.3)).fit(tenths)
    assert fitted.rating_scale_ == (0.1, 0.3)
