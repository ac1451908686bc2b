"""Model selection: the validation carve-out, early stopping, the L2 penalty, the bias baseline,
blending, choosing l2 on validation, refitting, and a diverging run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autorec import AutoRec, Ratings, TrainingError, random_split
from autorec.baseline import BIAS_REGULARISATION, Biases, fit_biases, select_biases
from autorec.metrics import rmse
from autorec.model import AutoRecNet
from autorec.selection import EarlyStopping, train_with_early_stopping, validation_split
from autorec.train import Trainer

CPU = torch.device("cpu")
SMALL = {"hidden": 16, "epochs": 8, "batch_size": 8, "lr": 0.01, "device": "cpu"}


# -- validation carve-out ---------------------------------------------------------------------
def test_validation_split_is_disjoint_from_test_deterministic_and_complete(low_rank) -> None:
    train, test = random_split(low_rank, 0.2, random_state=0)
    fit, val = validation_split(train, 0.1, random_state=3)
    key = lambda part: set(zip(part.user_idx.tolist(), part.item_idx.tolist(), strict=True))  # noqa: E731
    assert key(fit) | key(val) == key(train)
    assert not key(fit) & key(val)
    assert not key(val) & key(test) and not key(fit) & key(test)
    assert len(val) == round(0.1 * len(train))
    _, again_val = validation_split(train, 0.1, random_state=3)
    assert np.array_equal(again_val.user_idx, val.user_idx)
    assert np.array_equal(again_val.item_idx, val.item_idx)
    other = validation_split(train, 0.1, random_state=4)[1]
    assert key(other) != key(val)
    with pytest.raises(ValueError, match="validation"):
        validation_split(train, 0.0, random_state=0)


def test_estimator_validation_part_comes_from_training_only(low_rank) -> None:
    """The test ratings never influence the fit: changing them changes nothing."""
    train, test = random_split(low_rank, 0.2, random_state=0)
    params = {**SMALL, "validation": 0.2, "random_state": 0}
    first = AutoRec(**params).fit(train)
    second = AutoRec(**params).fit(train)
    assert first.validation_rmse_ == second.validation_rmse_
    assert first.best_epoch_ == second.best_epoch_
    np.testing.assert_array_equal(first.predict(test.user_ids, test.item_ids),
                                  second.predict(test.user_ids, test.item_ids))


# -- early stopping -------------------------------------------------------------------------------
def make_trainer(matrix, seed: int = 0, **options) -> Trainer:
    net = AutoRecNet(matrix.shape[1], hidden=8, dropout=0.0,
                     generator=torch.Generator().manual_seed(seed))
    return Trainer(net, matrix, lr=0.01, batch_size=8, device=CPU, seed=seed, **options)


def test_early_stopping_keeps_the_best_epochs_weights(low_rank) -> None:
    trainer = make_trainer(low_rank.to_csr("item"))
    scores = iter([9.0, 5.0, 4.0, 3.0, 3.5, 3.2, 3.9, 4.2, 1.0])  # epoch 0, 1, 2, ...
    snapshots = {}

    def score() -> float:
        snapshots[trainer.epoch] = {k: v.clone() for k, v in trainer.net.state_dict().items()}
        return next(scores)

    run = train_with_early_stopping(trainer, max_epochs=20, score=score, patience=3)
    assert run.best_epoch == 3 and run.best_score == 3.0
    assert [entry["epoch"] for entry in run.history] == [1, 2, 3, 4, 5, 6]  # stopped after 3
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, snapshots[3][name])
    assert not torch.equal(trainer.net.state_dict()["encoder_weight"],
                           snapshots[6]["encoder_weight"])


def test_untrained_weights_are_a_fallback_not_the_patience_anchor(low_rank) -> None:
    trainer = make_trainer(low_rank.to_csr("item"))
    # every epoch is worse than the start for longer than the patience, then better
    scores = iter([1.0, 2.0, 2.1, 2.2, 0.5, 3.0, 3.0, 3.0, 3.0])
    run = train_with_early_stopping(trainer, max_epochs=8, score=lambda: next(scores),
                                    patience=3)
    assert run.best_epoch == 4  # counted from epoch 0 it would have stopped after epoch 3
    scores = iter([1.0, 2.0, 2.1, 2.2, 2.3, 2.4])
    trainer = make_trainer(low_rank.to_csr("item"))
    initial = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    run = train_with_early_stopping(trainer, max_epochs=8, score=lambda: next(scores),
                                    patience=3)
    assert run.best_epoch == 0 and run.best_score == 1.0
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, initial[name])


# -- the L2 penalty ------------------------------------------------------------------------------
def _grads(matrix, l2: float, optimizer: str):
    net = AutoRecNet(matrix.shape[1], hidden=6, dropout=0.0,
                     sparse_grad=optimizer == "lazy_adam",
                     generator=torch.Generator().manual_seed(0))
    trainer = Trainer(net, matrix, lr=0.01, l2=l2, batch_size=matrix.shape[0], device=CPU,
                      seed=0, optimizer=optimizer)
    # the penalty's gradient itself (one process folds it into the optimizer's update:
    # test_model_training checks that the two give the same update)
    trainer.fold_l2 = False
    batch = next(trainer.batches(trainer.rows))
    trainer._zero_grad()
    trainer._backward(batch)
    grads = []
    for weight in (net.encoder_weight, net.decoder_weight):
        grad = weight.grad
        grads.append((grad.to_dense() if grad.is_sparse else grad).clone())
    return net, batch, grads


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_l2_adds_its_share_of_the_penalty_gradient(low_rank, optimizer: str) -> None:
    matrix = low_rank.to_csr("item")
    net, _, plain = _grads(matrix, 0.0, optimizer)
    _, _, penalised = _grads(matrix, 5.0, optimizer)
    for weight, g0, g1 in zip((net.encoder_weight, net.decoder_weight), plain, penalised,
                              strict=True):
        if optimizer == "adam":
            # the whole batch is all ratings: the whole penalty, on every row
            expected = 5.0 * weight.detach()
        else:
            # each touched row carries the share of its own ratings in the batch: all of them
            expected = torch.zeros_like(weight)
            counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
            touched = np.flatnonzero(counts)
            expected[touched] = 5.0 * weight.detach()[touched]
        torch.testing.assert_close(g1 - g0, expected, rtol=1e-4, atol=2e-5)


def test_l2_share_follows_the_batch(low_rank) -> None:
    """Half of the ratings in a batch: half of the penalty (dense Adam)."""
    matrix = low_rank.to_csr("item")
    net = AutoRecNet(matrix.shape[1], hidden=6, dropout=0.0,
                     generator=torch.Generator().manual_seed(0))
    trainer = Trainer(net, matrix, lr=0.01, l2=4.0, batch_size=5, device=CPU, seed=0)
    batch = next(trainer.batches(trainer.rows))
    for weight in (net.encoder_weight, net.decoder_weight):
        weight.grad = torch.zeros_like(weight)
    trainer.penalty.add(batch, lazy=False)
    share = 4.0 * batch.nnz / matrix.nnz
    torch.testing.assert_close(net.encoder_weight.grad, share * net.encoder_weight.detach())


def test_stronger_l2_shrinks_the_weights(low_rank) -> None:
    norms = []
    for l2 in (0.0, 1000.0):
        model = AutoRec(**{**SMALL, "validation": 0.0, "l2": l2, "random_state": 0,
                           "input_dropout": 0.0}).fit(low_rank)
        net = model.members_[0].net
        norms.append(float(net.encoder_weight.detach().norm() + net.decoder_weight.detach().norm()))
    assert norms[1] < 0.5 * norms[0]


def test_weight_decay_only_with_adam(low_rank) -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        AutoRec(**{**SMALL, "optimizer": "lazy_adam", "weight_decay": 1e-3}).fit(low_rank)


# -- baseline --------------------------------------------------------------------------------------
def test_fit_biases_solves_the_ridge_problem() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, n = 12, 9, 70
    user = rng.integers(0, n_users, n)
    item = rng.integers(0, n_items, n)
    rating = rng.normal(3.5, 1.0, n)
    biases = fit_biases(user, item, rating, n_users, n_items, reg_user=2.0, reg_item=3.0,
                        n_iter=200)
    # the same objective solved directly: [X_u X_i] b = r - mu with a ridge penalty
    design = np.zeros((n, n_users + n_items))
    design[np.arange(n), user] = 1.0
    design[np.arange(n), n_users + item] = 1.0
    penalty = np.diag([2.0] * n_users + [3.0] * n_items)
    solution = np.linalg.solve(design.T @ design + penalty,
                               design.T @ (rating - rating.mean()))
    np.testing.assert_allclose(biases.user, solution[:n_users], atol=1e-6)
    np.testing.assert_allclose(biases.item, solution[n_users:], atol=1e-6)
    assert biases.mean == pytest.approx(rating.mean())
    # unknown indices add no offset
    assert biases.predict(np.array([-1]), np.array([-1]))[0] == pytest.approx(rating.mean())


@pytest.mark.skipif(not __import__("autorec._kernels")._kernels.available(),
                    reason="numba not installed")
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_compiled_bias_passes_give_numpys_biases_bit_for_bit(monkeypatch, index_dtype) -> None:
    """From :data:`COMPILED_MIN_RATINGS` ratings the alternating passes run compiled (issue
    15: 2-3x faster at ML-1M and ML-10M shape); each bincount's sums in the same order."""
    from autorec import baseline

    rng = np.random.default_rng(1)
    n_users, n_items, n = 300, 80, 5_000
    user = rng.integers(0, n_users - 1, n).astype(index_dtype)  # the last user has none
    item = rng.integers(0, n_items, n).astype(index_dtype)
    rating = rng.normal(3.5, 1.0, n).round()
    results = []
    for threshold in (n + 1, n):
        monkeypatch.setattr(baseline, "COMPILED_MIN_RATINGS", threshold)
        assert (baseline._compiled_passes(n) is not None) == (threshold == n)
        first = fit_biases(user, item, rating, n_users, n_items, reg_user=3.0, reg_item=0.0)
        warm = fit_biases(user, item, rating, n_users, n_items, reg_user=2.0, reg_item=5.0,
                          n_iter=3, start=first)
        # starts of another length or type (the compiled loop took them as they were)
        longer = fit_biases(user, item, rating, n_users, n_items, n_iter=2,
                            start=Biases(0.0, np.full(n_users + 7, 0.5), np.zeros(n_items)))
        single = fit_biases(user, item, rating, n_users, n_items, n_iter=2,
                            start=Biases(0.0, first.user.astype(np.float32), first.item))
        results.append([first.user, first.item, warm.user, warm.item, longer.user,
                        single.user])
        # an index out of range gets what NumPy's passes do with it (an error, or for an
        # item a longer vector), never a write past the arrays
        for bad_user, bad_item in ((n_users, 0), (0, n_items), (-1, 0)):
            try:
                results[-1].append(fit_biases(np.append(user, bad_user), np.append(
                    item, bad_item), np.append(rating, 3.0), n_users, n_items).item)
            except (IndexError, ValueError) as error:
                results[-1].append(np.array([type(error).__name__], dtype=object))
    for numpy_passes, compiled_passes in zip(*results, strict=True):
        assert compiled_passes.dtype == numpy_passes.dtype
        assert compiled_passes.shape == numpy_passes.shape
        assert np.array_equal(numpy_passes, compiled_passes)
    assert [str(r[0]) for r in results[1][-3:] if r.dtype == object] == ["IndexError",
                                                                        "ValueError"]
    assert results[1][0][-1] == 0.0 and np.abs(results[1][0]).max() > 0.1


def test_select_biases_chooses_on_validation(low_rank) -> None:
    fit, val = validation_split(low_rank, 0.2, random_state=0)
    triple = lambda part: (part.user_idx, part.item_idx, part.rating)  # noqa: E731
    chosen = select_biases(triple(fit), triple(val), low_rank.n_users, low_rank.n_items)
    assert chosen.reg_user in BIAS_REGULARISATION and chosen.reg_item in BIAS_REGULARISATION

    def score(reg_user: float, reg_item: float) -> float:
        b = fit_biases(*triple(fit), low_rank.n_users, low_rank.n_items, reg_user=reg_user,
                       reg_item=reg_item)
        return rmse(val.rating, b.predict(val.user_idx, val.item_idx))

    best = score(chosen.reg_user, chosen.reg_item)
    # at least as good as every equal-penalty choice (the search's first stage)
    assert all(best <= score(r, r) + 1e-12 for r in BIAS_REGULARISATION)


def test_residual_network_starts_at_the_baseline(low_rank) -> None:
    """Epoch 0 of a biases model predicts mu + b_u + b_i exactly."""
    model = AutoRec(**{**SMALL, "epochs": 1, "validation": 0.2, "random_state": 0})
    model.fit(low_rank)
    member = model.members_[0]
    with torch.no_grad():
        member.net.decoder_weight.zero_()
    users, items = low_rank.user_ids, low_rank.item_ids
    user_idx, item_idx = model.fitted_.to_index(users, items)
    expected = np.clip(model.biases_.predict(user_idx, item_idx) + model.blend_[-1],
                       *model.rating_scale_)
    np.testing.assert_allclose(model.predict(users, items), expected, atol=1e-12)


# -- blending, l2 lists, refit ---------------------------------------------------------------------
def test_blend_weights_are_least_squares_on_validation(low_rank) -> None:
    # without the refit: the networks that were blended are the ones kept
    model = AutoRec(**{**SMALL, "variant": "both", "ensemble": 1, "validation": 0.2,
                       "random_state": 1, "refit": False}).fit(low_rank)
    assert len(model.members_) == 2 and len(model.blend_) == 3
    assert [m.spec.variant for m in model.members_] == ["item", "user"]
    # the validation part, with inputs from the fit part only, as the estimator scored it
    fit, val = validation_split(_compact(model, low_rank), 0.2,
                                _split_seed(model.random_state))
    for member in model.members_:
        member.set_inputs(fit.user_idx, fit.item_idx, fit.rating)
    outputs = np.column_stack([m.reconstruct(val.user_idx, val.item_idx)
                               for m in model.members_])
    target = val.rating - model.biases_.predict(val.user_idx, val.item_idx)
    design = np.column_stack([outputs, np.ones(len(val))])
    expected, *_ = np.linalg.lstsq(design, target, rcond=None)
    np.testing.assert_allclose(model.blend_, expected, rtol=1e-6, atol=1e-9)


def _compact(model: AutoRec, ratings: Ratings) -> Ratings:
    return Ratings(model.users_.to_index(ratings.user_ids),
                   model.items_.to_index(ratings.item_ids), ratings.rating, model.users_,
                   model.items_)


def _split_seed(random_state: int) -> int:
    from autorec.train import seed_streams

    return seed_streams(random_state, 1)[0]


def test_l2_list_keeps_the_value_best_on_validation(low_rank) -> None:
    grid = [0.0, 10.0, 3000.0]
    chosen = AutoRec(**{**SMALL, "l2": grid, "validation": 0.2, "random_state": 0})
    chosen.fit(low_rank)
    single = {l2: AutoRec(**{**SMALL, "l2": l2, "validation": 0.2, "random_state": 0})
              .fit(low_rank).validation_rmse_ for l2 in grid}
    assert chosen.l2_ == min(single, key=single.get)
    assert chosen.validation_rmse_ == pytest.approx(min(single.values()))
    with pytest.raises(ValueError, match="validation"):
        AutoRec(**{**SMALL, "l2": grid, "validation": 0.0}).fit(low_rank)


def test_refit_trains_on_all_ratings_for_the_chosen_epochs(low_rank) -> None:
    params = {**SMALL, "validation": 0.2, "random_state": 0, "epochs": 6, "patience": 2}
    plain = AutoRec(**params, refit=False).fit(low_rank)
    refit = AutoRec(**params).fit(low_rank)  # refit is the default
    assert refit.best_epoch_ == plain.best_epoch_
    member = refit.members_[0]
    assert member.matrix.nnz == len(low_rank)  # the refit network saw every rating
    refit_losses = [e for e in refit.history_ if "refit_train_loss" in e] or True
    assert refit_losses
    assert not np.array_equal(plain.predict(low_rank.user_ids, low_rank.item_ids),
                              refit.predict(low_rank.user_ids, low_rank.item_ids))


def test_predictions_use_every_training_rating_as_input(low_rank) -> None:
    model = AutoRec(**{**SMALL, "validation": 0.2, "random_state": 0}).fit(low_rank)
    assert model.members_[0].matrix.nnz == len(low_rank)


# -- a diverging run ------------------------------------------------------------------------------
def test_diverging_run_raises_training_error(low_rank) -> None:
    model = AutoRec(**{**SMALL, "lr": 1e30, "validation": 0.0, "baseline": "none",
                       "optimizer": "adam", "l2": 0.0, "random_state": 0})
    with pytest.raises(TrainingError, match="diverged") as info:
        model.fit(low_rank)
    assert not isinstance(info.value, ValueError)  # not a usage error: exit status 1


def test_validation_rmse_is_nan_without_validation(low_rank) -> None:
    model = AutoRec(**{**SMALL, "validation": 0.0, "random_state": 0}).fit(low_rank)
    assert math.isnan(model.validation_rmse_)
    assert model.best_epoch_ == SMALL["epochs"]


def test_best_weights_copied_only_when_the_module_trains_on() -> None:
    net = torch.nn.Linear(3, 2)
    stopper = EarlyStopping(patience=5)
    stopper.update(1, 1.0, net)
    assert stopper.best_state is None  # still the module's own weights
    assert stopper.state()["weight"].data_ptr() == net.weight.data_ptr()
    before = net.weight.detach().clone()
    stopper.hold()  # the module is about to change: now a copy exists
    with torch.no_grad():
        net.weight.add_(1.0)
    stopper.restore(net)
    assert torch.equal(net.weight, before)


def test_a_large_best_copy_is_held_in_a_file_and_read_back_in_place() -> None:
    """Past ``spill_bytes`` the copy lives in a temporary file, not in ``best_state``; restore
    writes it into the module's own tensors (same storage) with every value, and state()
    returns equal tensors (what a checkpoint saves)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Linear(5, 3).double())
    stopper = EarlyStopping(patience=5, spill_bytes=0)
    stopper.update(1, 1.0, net)
    stopper.hold()
    assert stopper.best_state is None and stopper._spilled is not None
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pointers = {k: v.data_ptr() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(-3.0).add_(1.0)
    held = stopper.state()
    assert all(torch.equal(held[k], before[k]) and held[k].dtype == before[k].dtype
               for k in before)
    stopper.restore(net)
    after = net.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert {k: v.data_ptr() for k, v in after.items()} == pointers
    stopper.update(2, 0.5, net)  # a new best: the file goes
    assert stopper._spilled is None


def test_a_small_best_copy_stays_in_memory() -> None:
    net = torch.nn.Linear(3, 2)
    stopper = EarlyStopping(patience=5)  # 32 bytes, far below SPILL_BYTES
    stopper.update(1, 1.0, net)
    stopper.hold()
    assert stopper.best_state is not None and stopper._spilled is None


def test_reset_replaces_the_copy_of_the_initial_weights() -> None:
    net = torch.nn.Linear(3, 2)
    calls = []
    initial = EarlyStopping(0, reset=lambda module: calls.append(module))
    initial.update(0, 1.0, net)
    initial.hold()
    assert initial.best_state is None and initial.state() is None
    initial.restore(net)
    assert calls == [net]


def test_select_biases_warm_path_for_large_data(low_rank) -> None:
    """Past ``large`` ratings the search warm-starts each candidate with 3 passes; it still
    chooses from the grid and lands near the exact search's choice."""
    fit, val = validation_split(low_rank, 0.2, random_state=0)
    triple = lambda part: (part.user_idx, part.item_idx, part.rating)  # noqa: E731
    exact = select_biases(triple(fit), triple(val), low_rank.n_users, low_rank.n_items)
    warm = select_biases(triple(fit), triple(val), low_rank.n_users, low_rank.n_items, large=0)
    assert warm.reg_user in BIAS_REGULARISATION and warm.reg_item in BIAS_REGULARISATION

    def score(biases) -> float:
        full = fit_biases(*triple(fit), low_rank.n_users, low_rank.n_items,
                          reg_user=biases.reg_user, reg_item=biases.reg_item)
        return rmse(val.rating, full.predict(val.user_idx, val.item_idx))

    assert score(warm) <= score(exact) + 0.01
