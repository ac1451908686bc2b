"""AutoRecNet against a numpy reference of its formula; the Trainer's batching and learning."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from autorec import AutoRec
from autorec.model import ACTIVATIONS, AutoRecNet
from autorec.sparse import SparseBatch
from autorec.train import Trainer, seed_streams

CPU = torch.device("cpu")


def params(net: AutoRecNet) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in net.named_parameters()}


NUMPY_ACTIVATIONS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "identity": lambda z: z,
}


def reference(net: AutoRecNet, x: np.ndarray, activation: str = "sigmoid") -> np.ndarray:
    """Dense reconstruction ``g(x @ W_enc + b_enc) @ W_dec^T + b_dec`` of every row of ``x``."""
    p = params(net)
    code = NUMPY_ACTIVATIONS[activation](x @ p["encoder_weight"] + p["encoder_bias"])
    return code @ p["decoder_weight"].T + p["decoder_bias"]


def rating_matrix(n_rows: int, n_cols: int, seed: int, empty_rows=()) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_rows, n_cols)) < 0.4,
                     rng.integers(1, 6, (n_rows, n_cols)), 0).astype(np.float32)
    dense[list(empty_rows)] = 0
    for r in set(range(n_rows)) - set(empty_rows):
        dense[r, r % n_cols] = 1.0 + r % 5  # every row not listed as empty has a rating
    return sp.csr_matrix(dense)


# -- AutoRecNet -----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh", "identity"])
def test_forward_matches_numpy_reference(activation: str) -> None:
    matrix = rating_matrix(6, 11, seed=0)
    net = AutoRecNet(11, hidden=7, activation=activation, dropout=0.0,
                     generator=torch.Generator().manual_seed(1))
    # move biases away from their tiny init so a dropped bias term would show
    with torch.no_grad():
        net.encoder_bias.add_(0.3)
        net.decoder_bias.add_(3.0)
    net.eval()
    batch = SparseBatch.from_scipy(matrix)
    out = net(batch).detach().double().numpy()
    full = reference(net, matrix.toarray().astype(np.float64), activation)
    rows, cols = matrix.nonzero()
    np.testing.assert_allclose(out, full[rows, cols], rtol=1e-5, atol=1e-5)

    # decode_pairs reconstructs any (row, output) pair, observed or not
    codes = net.encode(batch)
    all_rows = torch.arange(6).repeat_interleave(11)
    all_outs = torch.arange(11).repeat(6)
    pairs = net.decode_pairs(codes, all_rows, all_outs).detach().double().numpy()
    np.testing.assert_allclose(pairs.reshape(6, 11), full, rtol=1e-5, atol=1e-5)


def test_eval_mode_ignores_dropout_and_train_mode_applies_it() -> None:
    matrix = rating_matrix(5, 8, seed=1)
    batch = SparseBatch.from_scipy(matrix)
    net = AutoRecNet(8, hidden=64, dropout=0.5, generator=torch.Generator().manual_seed(0))
    net.eval()
    full = reference(net, matrix.toarray().astype(np.float64))
    code = net.encode(batch)
    np.testing.assert_allclose(net(batch).detach().numpy(), full[matrix.nonzero()], rtol=1e-5,
                               atol=1e-5)
    net.train()
    dropped = net.encode(batch, torch.Generator().manual_seed(0))
    zeroed = (dropped == 0).double().mean().item()
    assert 0.3 < zeroed < 0.7
    kept = dropped != 0
    # kept units are scaled by 1 / (1 - p)
    torch.testing.assert_close(dropped[kept], code[kept] * 2.0)
    again = net.encode(batch, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)


def test_weight_layout_and_init() -> None:
    net = AutoRecNet(30, hidden=12, generator=torch.Generator().manual_seed(0))
    assert net.encoder_weight.shape == (30, 12)
    assert net.decoder_weight.shape == (30, 12)
    assert net.encoder_bias.shape == (12,)
    assert net.decoder_bias.shape == (30,)
    same = AutoRecNet(30, hidden=12, generator=torch.Generator().manual_seed(0))
    for a, b in zip(net.parameters(), same.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation"):
        AutoRecNet(5, hidden=3, activation="softmax")
    assert "sigmoid" in ACTIVATIONS


# -- Trainer --------------------------------------------------------------------------------------
def make_trainer(matrix: sp.csr_matrix, *, hidden: int = 16, dropout: float = 0.0,
                 lr: float = 0.01, batch_size: int = 8, seed: int = 0) -> Trainer:
    net = AutoRecNet(matrix.shape[1], hidden=hidden, dropout=dropout,
                     generator=torch.Generator().manual_seed(seed))
    return Trainer(net, matrix, lr=lr, weight_decay=0.0, batch_size=batch_size, device=CPU,
                   seed=seed)


def test_loss_decreases_on_low_rank_data(low_rank) -> None:
    trainer = make_trainer(low_rank.to_csr("item"))
    losses = [trainer.train_epoch().train_loss for _ in range(6)]
    assert all(b < a for a, b in itertools.pairwise(losses[:5])), losses
    assert losses[-1] < 0.25 * losses[0], losses
    assert trainer.epoch == 6


def test_first_epoch_loss_is_masked_mse_at_initial_weights(low_rank) -> None:
    """With one batch and no dropout, the reported loss is the masked MSE before the update."""
    matrix = low_rank.to_csr("item")
    trainer = make_trainer(matrix, batch_size=matrix.shape[0])
    x = matrix.toarray().astype(np.float64)
    full = reference(trainer.net, x)
    expected = np.sum((x != 0) * (full - x) ** 2) / matrix.nnz
    assert trainer.train_epoch().train_loss == pytest.approx(expected, rel=1e-5)


def _rows_fed(trainer: Trainer) -> tuple[list[int], Counter]:
    """Run one epoch, recording the batch size and the content of every row fed to the net."""
    sizes: list[int] = []
    seen: Counter = Counter()

    built = trainer.batches

    def batches(rows: np.ndarray) -> Iterator[SparseBatch]:
        for batch in built(rows):  # the epoch's batches, as the trainer builds and trains on them
            sizes.append(batch.n_rows)
            crow = batch.crow.tolist()
            for r in range(batch.n_rows):
                span = slice(crow[r], crow[r + 1])
                seen[(tuple(batch.col[span].tolist()), tuple(batch.values[span].tolist()))] += 1
            yield batch

    trainer.batches = batches  # type: ignore[method-assign]
    try:
        trainer.train_epoch()
    finally:
        del trainer.batches
    return sizes, seen


def test_every_rated_row_fed_once_and_empty_rows_never() -> None:
    empty = (0, 4, 5, 17)
    matrix = rating_matrix(23, 9, seed=2, empty_rows=empty)
    expected = Counter()
    for r in range(matrix.shape[0]):
        row = matrix[r]
        if r not in empty:
            expected[(tuple(row.indices.tolist()), tuple(row.data.tolist()))] += 1
    trainer = make_trainer(matrix, batch_size=4)
    assert trainer.rows.tolist() == [r for r in range(23) if r not in empty]

    for _ in range(2):  # every epoch, in a fresh order
        sizes, seen = _rows_fed(trainer)
        assert sum(sizes) == 19  # rows with ratings
        assert sizes == [4, 4, 4, 4, 3]  # the last batch is smaller, nothing dropped
        assert seen == expected
        assert all(len(cols) > 0 for cols, _ in seen)


def test_batches_cover_all_ratings(low_rank) -> None:
    matrix = low_rank.to_csr("user")
    trainer = make_trainer(matrix, batch_size=7)
    batches = list(trainer.batches(trainer.rows))
    assert sum(b.n_rows for b in batches) == matrix.shape[0]
    assert sum(b.nnz for b in batches) == matrix.nnz
    assert batches[-1].n_rows == matrix.shape[0] % 7


def test_same_seed_same_training(low_rank) -> None:
    matrix = low_rank.to_csr("item")
    a = make_trainer(matrix, dropout=0.2, seed=3)
    b = make_trainer(matrix, dropout=0.2, seed=3)
    c = make_trainer(matrix, dropout=0.2, seed=4)
    for _ in range(2):
        la, lb, lc = a.train_epoch(), b.train_epoch(), c.train_epoch()
    assert la.train_loss == lb.train_loss
    assert la.train_loss != lc.train_loss
    for p, q in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(p, q)


def test_seed_streams() -> None:
    assert seed_streams(0, 3) == seed_streams(0, 3)
    assert seed_streams(0, 2) != seed_streams(1, 2)
    seeds = seed_streams(42, 4)
    assert len(set(seeds)) == 4
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("decoder_bias", [True, False])
def test_dense_batches_give_the_sparse_values_and_gradients(decoder_bias: bool) -> None:
    """The densified-batch path (for GPUs) computes what the sparse kernels compute."""
    matrix = rating_matrix(9, 13, seed=4, empty_rows=(2,))
    batch = SparseBatch.from_scipy(matrix)
    results = []
    for dense in (False, True):
        net = AutoRecNet(13, hidden=6, dropout=0.0, decoder_bias=decoder_bias,
                         dense_batches=dense, generator=torch.Generator().manual_seed(0))
        out = net(batch)
        loss = torch.sum((out - batch.values) ** 2)
        loss.backward()
        results.append((out.detach(), {k: v.grad.clone() for k, v in net.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="dense_batches"):
        AutoRecNet(13, hidden=6, sparse_grad=True, dense_batches=True)


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_a_trained_model_keeps_no_gradient_buffers(optimizer):
    """Training's gradient buffers (as large as the weights) are let go after fit."""
    import pandas as pd

    import autorec

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 60, 900), rng.integers(0, 40, 900)
    frame = pd.DataFrame({"user_id": users, "item_id": items,
                          "rating": rng.integers(1, 6, 900)}).drop_duplicates(
                              ["user_id", "item_id"])
    model = autorec.AutoRec(hidden=8, epochs=2, optimizer=optimizer, random_state=0)
    model.fit(frame)
    for parameter in model.members_[0].net.parameters():
        assert parameter.grad is None


# -- the L2 share folded into the update, the compiled lazy step, the auto choice ----------------
def _trained_weights(matrix: sp.csr_matrix, optimizer: str, fold: bool, epochs: int = 2,
                     l2: float = 50.0) -> list[torch.Tensor]:
    net = AutoRecNet(matrix.shape[1], hidden=8, dropout=0.0, decoder_bias=False,
                     sparse_grad=optimizer == "lazy_adam",
                     generator=torch.Generator().manual_seed(1))
    trainer = Trainer(net, matrix, optimizer=optimizer, lr=0.01, l2=l2, batch_size=7,
                      input_dropout=0.2, device=CPU, seed=3)
    assert trainer.fold_l2  # one process: folded by default
    trainer.fold_l2 = fold
    for _ in range(epochs):
        trainer.train_epoch()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_folded_l2_gives_the_explicit_penalty_update(low_rank, optimizer: str) -> None:
    """The share of the penalty handed to the optimizer updates the weights as adding its
    gradient first does (module docstring of autorec.train), and it does act."""
    matrix = low_rank.to_csr("item")
    explicit = _trained_weights(matrix, optimizer, fold=False)
    folded = _trained_weights(matrix, optimizer, fold=True)
    for a, b in zip(folded, explicit, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    unpenalised = _trained_weights(matrix, optimizer, fold=True, l2=0.0)
    assert not torch.allclose(unpenalised[0], folded[0], rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not __import__("autorec._kernels")._kernels.available(),
                    reason="numba not installed")
def test_compiled_lazy_step_gives_the_torch_update(low_rank, monkeypatch) -> None:
    """LazyAdam's in-place compiled row update against its gather / fused / scatter one."""
    from autorec import optim, sparse

    matrix = low_rank.to_csr("item")
    runs = []
    for threshold in (10**12, 0):
        monkeypatch.setattr(optim, "COMPILED_MIN_VALUES", threshold)
        monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", threshold)
        runs.append(_trained_weights(matrix, "lazy_adam", fold=True, epochs=3))
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_split_step_is_the_same_update_with_one_gradient_buffer(low_rank, monkeypatch,
                                                                 optimizer: str,
                                                                 compiled: bool) -> None:
    """On one process the decoder is stepped before the encoder's gradient is computed, so
    the two weights never hold gradients (or row buffers) at the same time (issue 15: the
    Netflix-shape peak memory; compiled, neither holds one); the weights come out bit for
    bit as with one step after the whole backward pass (compiled: to float32 rounding, the
    rows being stepped by Adam inside the gradient kernels)."""
    from autorec import _kernels, optim, sparse

    if compiled and not _kernels.available():
        pytest.skip("numba not installed")
    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 0 if compiled else 10**12)
    monkeypatch.setattr(optim, "COMPILED_MIN_VALUES", 0 if compiled else 10**12)
    matrix = low_rank.to_csr("item")
    runs = []
    for split in (False, True):
        net = AutoRecNet(matrix.shape[1], hidden=8, sparse_grad=optimizer == "lazy_adam",
                         decoder_bias=False, generator=torch.Generator().manual_seed(1))
        trainer = Trainer(net, matrix, targets=matrix.data - 3.0, optimizer=optimizer,
                          lr=0.01, l2=1.0, batch_size=7, input_dropout=0.25, device=CPU,
                          seed=3)
        assert trainer.split_step  # the default on one process
        trainer.split_step = split
        weights = (net.encoder_weight, net.decoder_weight)
        seen: list[tuple[list[str], int]] = []
        step = trainer.optimizers[0].step

        def spy(*args, step=step, net=net, weights=weights, seen=seen):
            with_grad = sorted(n for n, p in net.named_parameters() if p.grad is not None)
            buffers = {id(sparse._ROW_BUFFERS[id(w)]) for w in weights
                       if id(w) in sparse._ROW_BUFFERS}
            seen.append((with_grad, len(buffers)))
            return step(*args)

        trainer.optimizers[0].step = spy
        for _ in range(2):
            trainer.train_epoch()
        runs.append([p.detach().clone() for p in net.parameters()])
        # compiled, the weights' rows are stepped in the backward pass (no gradient)
        stepped = compiled
        if split:
            assert seen and [names for names, _ in seen] == (
                [[], ["encoder_bias"]] if stepped
                else [["decoder_weight"], ["encoder_bias", "encoder_weight"]]) * (len(seen) // 2)
        else:
            assert all(names == ["decoder_weight", "encoder_bias", "encoder_weight"]
                       for names, _ in seen)
        if stepped and optimizer == "lazy_adam":  # the touched rows' reusable buffers
            assert max(n for _, n in seen) == (0 if split else 2)
        if stepped and split:  # no weight-sized gradient buffer either
            assert trainer._grad_buffer is None and net.decoder_weight.grad is None
    for a, b in zip(*runs, strict=True):
        if compiled:  # the kernels' Adam step sums in its own order
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(a, b)


@pytest.mark.skipif(not __import__("autorec._kernels")._kernels.available(),
                    reason="numba not installed")
@pytest.mark.parametrize("optimizer", ["lazy_adam", "adam"])
def test_rows_stepped_in_the_backward_pass_give_the_same_update(low_rank, monkeypatch,
                                                                optimizer: str) -> None:
    """With the compiled kernels each weight row is stepped by Adam inside the gradient
    kernel as soon as its gradient is summed (issue 15: no gradient is written out): lazy
    Adam the touched rows, each with its share of the L2 decay; Adam every row (those a
    batch misses with a zero gradient), with the step's share as coupled weight decay and its
    state kept in the optimizer as torch keeps it. The weights after two epochs are those of
    the whole gradient then the optimizer's step, to float32 rounding (another kernel sums
    the same products); ``STEP_IN_BACKWARD = False`` gives them bit for bit."""
    from autorec import _kernels, optim, sparse

    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 0)
    monkeypatch.setattr(optim, "COMPILED_MIN_VALUES", 0)
    matrix = low_rank.to_csr("item")
    stepped: list[str] = []
    for name in ("weight_grad", "decoder_backward"):
        kernel = getattr(_kernels, name)

        def counting(*args, _kernel=kernel, _name=name, adam=None, **kwargs):
            if adam is not None:
                assert adam.all_rows == (optimizer == "adam")
                stepped.append(_name)
            return _kernel(*args, adam=adam, **kwargs)

        monkeypatch.setattr(_kernels, name, counting)

    def trained(split: bool, in_backward: bool) -> tuple[list[torch.Tensor], Trainer]:
        monkeypatch.setattr(sparse, "STEP_IN_BACKWARD", in_backward)
        net = AutoRecNet(matrix.shape[1], hidden=8, sparse_grad=optimizer == "lazy_adam",
                         generator=torch.Generator().manual_seed(1))
        trainer = Trainer(net, matrix, targets=matrix.data - 3.0, optimizer=optimizer,
                          lr=0.01, l2=1.0, batch_size=7, input_dropout=0.25, device=CPU,
                          seed=3)
        trainer.split_step = split
        for _ in range(2):
            trainer.train_epoch()
        return [p.detach().clone() for p in net.parameters()], trainer

    whole, _ = trained(False, True)
    assert not stepped  # no row stepping without the split step
    for a, b in zip(whole, trained(True, False)[0], strict=True):
        assert torch.equal(a, b)
    assert not stepped
    in_backward, trainer = trained(True, True)
    n_batches = 2 * -(-np.count_nonzero(np.diff(matrix.indptr)) // 7)
    assert stepped.count("weight_grad") == stepped.count("decoder_backward") == n_batches
    for a, c in zip(whole, in_backward, strict=True):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-5)
    state = trainer.optimizers[0].state[trainer.net.decoder_weight]
    assert int(state["step"]) == n_batches and state["exp_avg"].abs().sum() > 0
    # batches above the mean on the compiled kernels (stepped there), the others on torch's
    # (and under Adam into the weight-sized gradient buffer, which a stepped weight drops)
    rated_rows = np.count_nonzero(np.diff(matrix.indptr))
    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 7 * matrix.nnz // rated_rows + 1)
    stepped.clear()
    mixed, trainer = trained(True, True)
    assert 0 < len(stepped) < 2 * n_batches
    for a, c in zip(whole, mixed, strict=True):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-5)
    for weight in (trainer.net.encoder_weight, trainer.net.decoder_weight):  # one step a batch
        assert int(trainer.optimizers[0].state[weight]["step"]) == n_batches


@pytest.mark.skipif(not __import__("autorec._kernels")._kernels.available(),
                    reason="numba not installed")
def test_compiled_epoch_hands_torch_threads_to_the_kernels(low_rank, monkeypatch) -> None:
    """During a lazy epoch of compiled kernels torch runs one thread and the kernels get torch's
    count (torch's spinning workers would otherwise share the cores with them); torch's
    count is restored afterwards, also when the epoch fails."""
    from autorec import _kernels, sparse

    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        matrix = low_rank.to_csr("item")
        net = AutoRecNet(matrix.shape[1], hidden=8, sparse_grad=True,
                         generator=torch.Generator().manual_seed(1))
        trainer = Trainer(net, matrix, optimizer="lazy_adam", lr=0.01, l2=1.0, batch_size=7,
                          device=CPU, seed=3)
        seen = []

        def on_batch_end(done: int, total: int) -> None:
            numba = _kernels._numba().numba
            seen.append((torch.get_num_threads(), _kernels._threads(_kernels._numba()),
                         numba.config.NUMBA_NUM_THREADS))

        trainer.on_batch_end = on_batch_end
        trainer.train_epoch()
        assert seen and all(t == 1 and k == min(2, most) for t, k, most in seen)
        assert torch.get_num_threads() == 2

        def fail(done: int, total: int) -> None:
            raise KeyboardInterrupt

        trainer.on_batch_end = fail
        with pytest.raises(KeyboardInterrupt):
            trainer.train_epoch()
        assert torch.get_num_threads() == 2
        # without the compiled kernels torch keeps its threads
        monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 10**12)
        seen.clear()
        trainer.on_batch_end = on_batch_end
        trainer.train_epoch()
        assert all(t == 2 for t, _, _ in seen)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_a_trainer_of_large_batches_sends_its_smaller_last_batch_to_the_kernels_too(
        low_rank, monkeypatch, optimizer: str) -> None:
    """Where a trainer's batches hold COMPILED_MIN_NNZ ratings on average, every batch of its
    epochs takes the compiled kernels, the smaller last one included; a trainer of smaller
    batches leaves the choice to each batch's size."""
    from autorec import _kernels, sparse

    if not _kernels.available():
        pytest.skip("numba not installed")
    matrix = low_rank.to_csr("item")
    batch_size = 7
    sizes = [int(np.diff(matrix.indptr)[start:start + batch_size].sum())
             for start in range(0, matrix.shape[0], batch_size)]
    assert sizes[-1] < min(sizes[:-1])  # the last batch is the smallest
    # a threshold between the last batch's size and the average
    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", (sizes[-1] + min(sizes[:-1])) // 2)
    net = AutoRecNet(matrix.shape[1], hidden=8, sparse_grad=optimizer == "lazy_adam",
                     generator=torch.Generator().manual_seed(1))
    trainer = Trainer(net, matrix, optimizer=optimizer, lr=0.01, batch_size=batch_size,
                      device=CPU, seed=3)
    assert trainer.large_batches
    batches = list(trainer.batches(trainer.rows))
    assert batches[-1].nnz == sizes[-1]
    assert all(sparse._plan(b, net.encoder_weight) is not None for b in batches)
    # the same batch alone is judged by its size
    alone = SparseBatch.from_scipy(matrix[trainer.rows[-len(batches[-1].crow) + 1:]])
    assert alone.nnz == sizes[-1] and sparse._plan(alone, net.encoder_weight) is None
    trainer.train_epoch()  # and trains
    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 10**12)
    assert not trainer.large_batches
    assert all(sparse._plan(b, net.encoder_weight) is None
               for b in trainer.batches(trainer.rows))


def _csr_with_share(n_rows: int, n_cols: int, per_row: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_rows), per_row)
    cols = np.concatenate([rng.choice(n_cols, per_row, replace=False) for _ in range(n_rows)])
    return sp.csr_matrix((rng.integers(1, 6, len(rows)).astype(np.float32), (rows, cols)),
                         shape=(n_rows, n_cols))


def test_auto_picks_lazy_on_sparse_batches_and_adam_on_dense_ones(caplog) -> None:
    from autorec.optim import AUTO_DENSE_SHARE, choose_optimizer, touched_share

    sparse_rows = _csr_with_share(600, 5000, 3, seed=0)     # a batch of 256 touches ~14 %
    dense_rows = _csr_with_share(600, 300, 150, seed=1)     # every batch touches ~100 %
    assert touched_share(sparse_rows, 256, 0) < 0.2
    assert touched_share(dense_rows, 256, 0) > 0.99
    with caplog.at_level("INFO", logger="autorec.optim"):
        assert choose_optimizer("auto", sparse_rows, 256, 0) == "lazy_adam"
        assert choose_optimizer("auto", dense_rows, 256, 0) == "adam"
    assert "optimizer auto: lazy_adam" in caplog.text and "optimizer auto: adam" in caplog.text
    # explicit names are kept; settings that need dense gradients get adam
    assert choose_optimizer("lazy_adam", dense_rows, 256, 0) == "lazy_adam"
    assert choose_optimizer("adam", sparse_rows, 256, 0) == "adam"
    assert choose_optimizer("auto", sparse_rows, 256, 0, weight_decay=1e-5) == "adam"
    assert choose_optimizer("auto", sparse_rows, 256, 0, dense_batches=True) == "adam"
    assert 0.0 < AUTO_DENSE_SHARE < 1.0


def test_auto_is_the_default_and_resolved_per_network() -> None:
    import pandas as pd

    import autorec

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 3000, 2500),
                          "item_id": rng.integers(0, 400, 2500),
                          "rating": rng.integers(1, 6, 2500)}).drop_duplicates(
                              ["user_id", "item_id"])
    model = autorec.AutoRec(hidden=8, epochs=1, random_state=0)
    assert model.optimizer == "auto"
    model.fit(frame)
    # 400 items in batches of 256 over ~2,500 users: a batch touches well under 90 %
    assert model.members_[0].optimizer == "lazy_adam"
    assert model.members_[0].net.sparse_grad


@pytest.mark.skipif(not hasattr(os, "fork") or not __import__("autorec._kernels")._kernels
                    .available(), reason="needs os.fork and numba")
def test_a_child_forked_after_the_kernels_ran_on_openmp_trains_on_torch_kernels(
        low_rank, monkeypatch) -> None:
    """GNU OpenMP cannot run in a process forked after it ran (Numba ends such a child): a
    child forked after the kernels ran on Numba's OpenMP layer trains on torch's kernels
    instead, and the parent keeps its kernels."""
    import numba

    from autorec import _kernels, sparse

    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 0)
    matrix = low_rank.to_csr("item")

    def train() -> float:
        net = AutoRecNet(matrix.shape[1], hidden=8, generator=torch.Generator().manual_seed(1))
        trainer = Trainer(net, matrix, optimizer="adam", lr=0.01, l2=1.0, batch_size=7,
                          device=CPU, seed=3)
        return trainer.train_epoch().train_loss

    train()  # the kernels run here
    openmp = numba.threading_layer() == "omp"
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 3
        try:
            torch.set_num_threads(1)
            code = 0 if _kernels.available() != openmp and np.isfinite(train()) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _kernels.available()


def test_dense_batches_keep_torchs_threads(low_rank, monkeypatch) -> None:
    """Densified batches (``dense_batches``) are torch's matrix products, never the compiled
    kernels: their epochs must not hand torch's threads over to the kernels (they ran on one
    thread on a CPU when the batches were large)."""
    from autorec import _kernels, sparse

    if not _kernels.available():
        pytest.skip("numba not installed")
    matrix = low_rank.to_csr("item")
    monkeypatch.setattr(sparse, "COMPILED_MIN_NNZ", 1)
    trainers = []
    for dense in (False, True):
        net = AutoRecNet(matrix.shape[1], hidden=8, dense_batches=dense,
                         generator=torch.Generator().manual_seed(1))
        trainers.append(Trainer(net, matrix, optimizer="adam", lr=0.01, batch_size=7,
                                device=CPU, seed=3))
    assert trainers[0]._compiled_batches() and trainers[0]._steps_in_kernels()
    assert not trainers[1]._compiled_batches() and not trainers[1]._steps_in_kernels()
    threads_seen: list[int] = []
    trainers[1].on_batch_end = lambda done, total: threads_seen.append(torch.get_num_threads())
    trainers[1].train_epoch()
    assert set(threads_seen) == {torch.get_num_threads()}


def test_ratings_near_the_accepted_limit_train_without_a_baseline() -> None:
    # each squared error fits float32, their sum did not: the loss became inf in epoch 1 and
    # the run was called diverged, advising a lower --lr (no lr helped)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 10)
    items = np.concatenate([rng.choice(40, 10, replace=False) for _ in range(30)])
    frame = pd.DataFrame({"user_id": users, "item_id": items,
                          "rating": rng.integers(1, 6, len(users)) * 1e18})
    model = AutoRec(hidden=4, epochs=2, random_state=0, device="cpu", baseline="none",
                    ranking="none").fit(frame)
    assert all(np.isfinite(entry["train_loss"]) for entry in model.history_)
