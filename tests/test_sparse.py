"""Sparse kernels against dense formulas: SparseBatch, sparse_linear (SpMM), sampled_decode.

Kernels compute in float32, so comparisons use tolerances; the masking tests compare exactly.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from autorec import _kernels
from autorec import member as member_module
from autorec import sparse as sparse_module
from autorec.model import AutoRecNet
from autorec.sparse import SparseBatch, sampled_decode, slice_rows, sparse_linear

TOL = {"rtol": 1e-5, "atol": 1e-5}


def random_csr(n_rows: int = 7, n_cols: int = 9, density: float = 0.35, seed: int = 0,
               empty_rows: tuple[int, ...] = (2,), empty_cols: tuple[int, ...] = (0, 5)
               ) -> sp.csr_matrix:
    """A random 1-5 rating matrix with some rows and columns forced empty."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_rows, n_cols)) < density,
                     rng.integers(1, 6, (n_rows, n_cols)), 0).astype(np.float32)
    dense[list(empty_rows), :] = 0
    dense[:, list(empty_cols)] = 0
    matrix = sp.csr_matrix(dense)
    assert matrix.nnz > 5
    return matrix


def observed(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of every stored entry, in CSR order."""
    coo = matrix.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


# -- SparseBatch ---------------------------------------------------------------------------------
def touched_of(matrix: sp.csr_matrix) -> list[int]:
    return np.flatnonzero(np.diff(matrix.tocsc().indptr)).tolist()


def test_from_scipy_round_trip_and_compact_transpose() -> None:
    matrix = random_csr()
    batch = SparseBatch.from_scipy(matrix)
    dense = torch.from_numpy(matrix.toarray())
    assert (batch.n_rows, batch.n_cols, batch.nnz) == (7, 9, matrix.nnz)
    assert torch.equal(batch.csr().to_dense(), dense)
    # the transpose keeps only the columns that hold an entry (0 and 5 are empty)
    assert batch.touched.tolist() == touched_of(matrix)
    assert 0 not in batch.touched.tolist() and 5 not in batch.touched.tolist()
    assert torch.equal(batch.csr_t().to_dense(), dense.T[batch.touched])
    rows, cols = observed(matrix)
    assert batch.row.tolist() == rows.tolist()
    assert batch.col.tolist() == cols.tolist()
    # values[t_perm] lists the values column by column
    assert batch.values[batch.t_perm].tolist() == matrix.tocsc().data.tolist()


def test_csr_t_with_other_values_follows_batch_order() -> None:
    matrix = random_csr(seed=1)
    batch = SparseBatch.from_scipy(matrix)
    other = torch.arange(1, batch.nnz + 1, dtype=torch.float32)
    expected = torch.zeros(batch.n_rows, batch.n_cols)
    expected[batch.row, batch.col] = other
    assert torch.equal(batch.csr(other).to_dense(), expected)
    assert torch.equal(batch.csr_t(other).to_dense(), expected.T[batch.touched])


def test_from_scipy_unsorted_indices() -> None:
    # column indices stored out of order within a row
    matrix = sp.csr_matrix((np.array([1.0, 2.0, 3.0], dtype=np.float32),
                            np.array([3, 0, 1]), np.array([0, 2, 3])), shape=(2, 4))
    batch = SparseBatch.from_scipy(matrix)
    assert torch.equal(batch.csr().to_dense(), torch.from_numpy(matrix.toarray()))
    assert batch.touched.tolist() == [0, 1, 3]
    assert torch.equal(batch.csr_t().to_dense(), torch.from_numpy(matrix.toarray().T[[0, 1, 3]]))


def test_from_scipy_empty_matrix() -> None:
    batch = SparseBatch.from_scipy(sp.csr_matrix((3, 4), dtype=np.float32))
    assert batch.nnz == 0
    assert batch.touched.tolist() == []
    assert batch.csr_t().shape == (0, 3)


def test_slice_rows_matches_scipy_and_aligns_other_arrays() -> None:
    matrix = random_csr(n_rows=12, n_cols=10, seed=7, empty_rows=(3, 8))
    other = np.arange(matrix.nnz) * 10  # an array aligned with matrix.data
    rows = np.array([5, 3, 0, 11, 8, 5])  # any order, empty rows, repeats
    indptr, positions = slice_rows(matrix.indptr.astype(np.int64), rows)
    expected = matrix[rows]
    assert indptr.tolist() == expected.indptr.tolist()
    assert matrix.indices[positions].tolist() == expected.indices.tolist()
    assert matrix.data[positions].tolist() == expected.data.tolist()
    # entry k of the slice is entry positions[k] of the parent, for any aligned array
    parent_pos = sp.csr_matrix((np.arange(1, matrix.nnz + 1), matrix.indices, matrix.indptr),
                               shape=matrix.shape)[rows].data - 1
    assert other[positions].tolist() == other[parent_pos].tolist()


def test_targets_default_to_values_and_with_values_keeps_them() -> None:
    matrix = random_csr(seed=8)
    batch = SparseBatch.from_scipy(matrix)
    assert batch.targets is batch.values
    hidden_input = batch.with_values(torch.zeros(batch.nnz))
    assert torch.equal(hidden_input.targets, batch.values)
    assert torch.count_nonzero(hidden_input.values) == 0


# -- sparse_linear -------------------------------------------------------------------------------
def test_sparse_linear_forward_and_gradients_match_dense() -> None:
    matrix = random_csr(seed=2)
    batch = SparseBatch.from_scipy(matrix)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(9, 4, generator=gen, requires_grad=True)
    bias = torch.randn(4, generator=gen, requires_grad=True)
    upstream = torch.randn(7, 4, generator=gen)

    out = sparse_linear(batch, weight, bias)
    (out * upstream).sum().backward()

    dense_x = torch.from_numpy(matrix.toarray())
    weight_ref = weight.detach().clone().requires_grad_()
    bias_ref = bias.detach().clone().requires_grad_()
    ref = dense_x @ weight_ref + bias_ref
    (ref * upstream).sum().backward()

    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(weight.grad, weight_ref.grad, **TOL)
    torch.testing.assert_close(bias.grad, bias_ref.grad, **TOL)
    # inputs never observed in the batch get exactly zero weight gradient
    assert torch.count_nonzero(weight.grad[[0, 5]]) == 0


def test_sparse_linear_gradcheck_float64_reference() -> None:
    """Gradients equal the analytic ones (X^T G, sum G) computed in float64."""
    matrix = random_csr(seed=4)
    batch = SparseBatch.from_scipy(matrix)
    weight = torch.randn(9, 3, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    upstream = torch.randn(7, 3)
    sparse_linear(batch, weight, bias).backward(upstream)
    x = matrix.toarray().astype(np.float64)
    g = upstream.double().numpy()
    np.testing.assert_allclose(weight.grad.double().numpy(), x.T @ g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bias.grad.double().numpy(), g.sum(0), rtol=1e-5, atol=1e-5)


# -- sampled_decode ------------------------------------------------------------------------------
def _decode_setup(seed: int = 3):
    matrix = random_csr(seed=seed)
    batch = SparseBatch.from_scipy(matrix)
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(7, 4, generator=gen, requires_grad=True)
    weight = torch.randn(9, 4, generator=gen, requires_grad=True)
    bias = torch.randn(9, generator=gen, requires_grad=True)
    return matrix, batch, hidden, weight, bias


def test_sampled_decode_forward_and_gradients_match_dense_masked() -> None:
    matrix, batch, hidden, weight, bias = _decode_setup()
    rows, cols = observed(matrix)
    upstream = torch.randn(batch.nnz, generator=torch.Generator().manual_seed(9))

    out = sampled_decode(batch, hidden, weight, bias)
    (out * upstream).sum().backward()

    h_ref, w_ref, b_ref = (t.detach().clone().requires_grad_() for t in (hidden, weight, bias))
    full = h_ref @ w_ref.T + b_ref
    mask_grad = torch.zeros(7, 9)
    mask_grad[rows, cols] = upstream
    (full * mask_grad).sum().backward()

    torch.testing.assert_close(out, full.detach()[rows, cols], **TOL)
    torch.testing.assert_close(hidden.grad, h_ref.grad, **TOL)
    torch.testing.assert_close(weight.grad, w_ref.grad, **TOL)
    torch.testing.assert_close(bias.grad, b_ref.grad, **TOL)


def test_sampled_decode_is_blind_to_unobserved_outputs() -> None:
    _, batch, hidden, weight, bias = _decode_setup(seed=5)
    unobserved_cols = [0, 5]
    target = batch.values

    def loss_and_grads(w: torch.Tensor, b: torch.Tensor):
        h_ = hidden.detach().clone().requires_grad_()
        w_ = w.detach().clone().requires_grad_()
        b_ = b.detach().clone().requires_grad_()
        loss = ((sampled_decode(batch, h_, w_, b_) - target) ** 2).sum()
        loss.backward()
        return loss.detach(), h_.grad, w_.grad, b_.grad

    loss, g_hidden, g_weight, g_bias = loss_and_grads(weight, bias)
    # outputs never observed in the batch get exactly zero gradient
    assert torch.count_nonzero(g_weight[unobserved_cols]) == 0
    assert torch.count_nonzero(g_bias[unobserved_cols]) == 0
    assert torch.count_nonzero(g_weight) > 0

    # wild decoder weights/biases at the unobserved outputs change nothing
    w2, b2 = weight.detach().clone(), bias.detach().clone()
    w2[unobserved_cols] = 1e4
    b2[unobserved_cols] = -1e4
    loss2, g_hidden2, g_weight2, g_bias2 = loss_and_grads(w2, b2)
    assert torch.equal(loss, loss2)
    assert torch.equal(g_hidden, g_hidden2)
    assert torch.equal(g_weight, g_weight2)
    assert torch.equal(g_bias, g_bias2)


def test_model_loss_is_masked_sse_and_ignores_unobserved() -> None:
    """The trainer's loss equals numpy's SSE over observed entries only."""
    matrix = random_csr(n_rows=6, n_cols=10, seed=6, empty_rows=(1,), empty_cols=(3, 7))
    batch = SparseBatch.from_scipy(matrix)
    net = AutoRecNet(10, hidden=5, dropout=0.0, generator=torch.Generator().manual_seed(0))
    net.eval()
    loss = torch.sum((net(batch) - batch.values) ** 2)

    p = {k: v.detach().double().numpy() for k, v in net.named_parameters()}
    x = matrix.toarray().astype(np.float64)
    code = 1.0 / (1.0 + np.exp(-(x @ p["encoder_weight"] + p["encoder_bias"])))
    full = code @ p["decoder_weight"].T + p["decoder_bias"]
    mask = x != 0
    expected = np.sum(mask * (full - x) ** 2)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    # the unmasked SSE (zeros taken as targets) is a different number
    assert not np.isclose(np.sum((full - x) ** 2), expected, rtol=1e-3)

    loss.backward()
    # encoder rows of unobserved inputs and decoder rows of unobserved outputs: zero gradient
    for name in ("encoder_weight", "decoder_weight"):
        grad = dict(net.named_parameters())[name].grad
        assert torch.count_nonzero(grad[[3, 7]]) == 0
    assert torch.count_nonzero(net.decoder_bias.grad[[3, 7]]) == 0


# -- row-sparse gradients (lazy optimizers) -------------------------------------------------------
def test_sparse_grad_equals_dense_grad_on_touched_rows() -> None:
    matrix = random_csr(seed=10)
    batch = SparseBatch.from_scipy(matrix)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 4, generator=gen)
    upstream = torch.randn(batch.nnz, generator=gen)
    grads = {}
    for sparse in (False, True):
        enc_w = torch.randn(9, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
        enc_b = torch.zeros(4, requires_grad=True)
        dec_w = torch.randn(9, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
        dec_b = torch.randn(9, generator=torch.Generator().manual_seed(3), requires_grad=True)
        code = torch.sigmoid(sparse_linear(batch, enc_w, enc_b, sparse_grad=sparse)) + hidden
        out = sampled_decode(batch, code, dec_w, dec_b, sparse_grad=sparse)
        (out * upstream).sum().backward()
        grads[sparse] = (enc_w.grad, dec_w.grad, dec_b.grad, enc_b.grad)
    for dense_grad, sparse_grad in zip(grads[False], grads[True], strict=True):
        if sparse_grad.is_sparse:
            # only the touched rows are stored, and they equal the dense gradient's rows
            assert sparse_grad.coalesce().indices()[0].tolist() == touched_of(matrix)
            sparse_grad = sparse_grad.to_dense()
        torch.testing.assert_close(sparse_grad, dense_grad, **TOL)
    assert grads[True][0].is_sparse and grads[True][1].is_sparse and grads[True][2].is_sparse
    assert not grads[True][3].is_sparse  # the encoder bias is dense: every unit is touched


def test_decoder_without_bias() -> None:
    matrix, batch, hidden, weight, _ = _decode_setup(seed=11)
    out = sampled_decode(batch, hidden, weight, None)
    rows, cols = observed(matrix)
    full = hidden.detach() @ weight.detach().T
    torch.testing.assert_close(out.detach(), full[rows, cols], **TOL)


def test_chunked_weight_gradients_equal_the_whole_batch_ones(monkeypatch):
    """Gradients added into ``.grad`` a chunk of touched rows at a time (the bounded-memory
    path used at Netflix shape) are bitwise those computed in one piece."""
    import scipy.sparse as sp

    from autorec import sparse as sparse_module

    matrix = sp.random(40, 900, density=0.3, format="csr", random_state=3, dtype=np.float32)
    matrix.sort_indices()
    batch = sparse_module.SparseBatch.from_scipy(matrix)
    grads = []
    for chunk in (1 << 16, 7):
        monkeypatch.setattr(sparse_module, "_GRAD_CHUNK_ROWS", chunk)
        generator = torch.Generator().manual_seed(0)
        encoder = torch.randn(900, 16, generator=generator, requires_grad=True)
        decoder = torch.randn(900, 16, generator=generator, requires_grad=True)
        bias = torch.zeros(16, requires_grad=True)
        hidden = torch.sigmoid(sparse_module.sparse_linear(batch, encoder, bias))
        out = sparse_module._SampledDecode.apply(batch, hidden, decoder, None, False)
        ((out - batch.values) ** 2).sum().backward()
        grads.append((encoder.grad.clone(), decoder.grad.clone()))
    assert grads[0][0].abs().sum() > 0
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


# -- compiled kernels (autorec._kernels) against the torch kernels --------------------------------
compiled = pytest.mark.skipif(not _kernels.available(), reason="numba not installed")


def _both_paths(monkeypatch, matrix: sp.csr_matrix, sparse_grad: bool, hidden: int = 24,
                bias: bool = True):
    """Decoder outputs and every gradient of a tiny network, through the torch kernels and
    through the compiled ones (the threshold lowered so that this small batch uses them)."""
    results = []
    for min_nnz in (10**12, 0):
        monkeypatch.setattr(sparse_module, "COMPILED_MIN_NNZ", min_nnz)
        gen = torch.Generator().manual_seed(5)
        n = matrix.shape[1]
        w_enc = torch.nn.Parameter(torch.randn(n, hidden, generator=gen))
        b_enc = torch.nn.Parameter(torch.randn(hidden, generator=gen))
        w_dec = torch.nn.Parameter(torch.randn(n, hidden, generator=gen))
        b_dec = torch.nn.Parameter(torch.randn(n, generator=gen)) if bias else None
        batch = SparseBatch.from_scipy(matrix)
        code = torch.sigmoid(sparse_linear(batch, w_enc, b_enc, sparse_grad=sparse_grad))
        out = sampled_decode(batch, code, w_dec, b_dec, sparse_grad=sparse_grad)
        torch.sum((out - batch.values) ** 2).backward()
        params = [w_enc, b_enc, w_dec] + ([b_dec] if bias else [])
        results.append((out.detach(), [p.grad.to_dense() if p.grad.is_sparse else p.grad
                                       for p in params],
                        [p.grad.is_sparse for p in params]))
    return results


@compiled
@pytest.mark.parametrize("sparse_grad", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_compiled_kernels_give_the_torch_values_and_gradients(monkeypatch, sparse_grad: bool,
                                                              bias: bool) -> None:
    matrix = random_csr(n_rows=40, n_cols=70, density=0.2, seed=4, empty_rows=(3,),
                        empty_cols=(0, 9, 69))
    (out_t, grads_t, sparse_t), (out_c, grads_c, sparse_c) = _both_paths(
        monkeypatch, matrix, sparse_grad, bias=bias)
    # same sums in another order: float32 rounding apart, not bitwise
    torch.testing.assert_close(out_c, out_t, rtol=1e-5, atol=1e-4)
    for grad_c, grad_t in zip(grads_c, grads_t, strict=True):
        torch.testing.assert_close(grad_c, grad_t, rtol=1e-5, atol=1e-3)
    assert sparse_c == sparse_t


@compiled
def test_a_batch_plan_is_made_once_for_its_step_and_dropped_after_the_epoch(monkeypatch) -> None:
    """The encoder (its batch with dropped-out values) and the decoder share one plan of the
    batch's transpose, its all-rows form is made once, and both equal freshly made ones."""
    monkeypatch.setattr(sparse_module, "COMPILED_MIN_NNZ", 0)
    batch = SparseBatch.from_scipy(random_csr(n_rows=30, n_cols=50, density=0.2, seed=1))
    other = SparseBatch.from_scipy(random_csr(n_rows=30, n_cols=50, density=0.2, seed=2))
    weight = torch.zeros(50, 4)
    plan = sparse_module._plan(batch, weight)
    assert sparse_module._plan(batch.with_values(batch.values * 0.5), weight) is plan
    assert plan.all_rows(50) is plan.all_rows(50)
    fresh = _kernels.Plan(batch.t_crow, batch.t_col, batch.t_perm, batch.touched)
    for name in ("t_crow", "t_col", "t_perm", "touched", "bounds"):
        np.testing.assert_array_equal(getattr(plan.all_rows(50), name),
                                      getattr(fresh.all_rows(50), name))
    current = sparse_module._plan(other, weight)
    assert current is not plan
    threads = torch.get_num_threads()
    if min(threads, _kernels._numba().numba.config.NUMBA_NUM_THREADS) > 1:
        torch.set_num_threads(1)  # a plan splits the work for the threads it was made for
        try:
            assert sparse_module._plan(other, weight).threads == 1 != current.threads
        finally:
            torch.set_num_threads(threads)
    sparse_module.release_row_buffers([weight])
    assert _kernels._last_plan is None


_THREADS_PROBE = """
import torch
torch.set_num_threads(1)
from autorec import sparse
from autorec.sparse import SparseBatch
import scipy.sparse as sp
sparse.COMPILED_MIN_NNZ = 0
batch = SparseBatch.from_scipy(sp.random(30, 50, density=0.2, format="csr", random_state=1,
                                         dtype="float32"))
sparse.sparse_linear(batch, torch.ones(50, 4), torch.zeros(4))
print(torch.get_num_threads())
"""


@compiled
def test_the_first_kernel_call_leaves_torchs_thread_count_as_the_user_set_it() -> None:
    """Starting Numba's OpenMP pool sets the OpenMP thread count torch shares to Numba's
    maximum; a fresh process, as the pool starts once."""
    out = subprocess.run([sys.executable, "-c", _THREADS_PROBE], capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[-1] == "1"


@compiled
def test_compiled_kernels_add_into_kept_gradient_buffers(monkeypatch) -> None:
    """A dense leaf's gradient is added into its ``.grad``, as autograd accumulates."""
    monkeypatch.setattr(sparse_module, "COMPILED_MIN_NNZ", 0)
    matrix = random_csr(n_rows=12, n_cols=20, density=0.4, seed=2)
    batch = SparseBatch.from_scipy(matrix)
    gen = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(20, 6, generator=gen))
    codes = torch.randn(12, 6, generator=gen)
    grads = []
    for _ in range(2):
        torch.sum(sampled_decode(batch, codes, weight, None) ** 2).backward()
        grads.append(weight.grad.clone())
    torch.testing.assert_close(grads[1], 2 * grads[0], rtol=1e-6, atol=1e-6)


@compiled
def test_a_second_sparse_backward_adds_to_the_first(monkeypatch) -> None:
    """The reused buffer of row-sparse gradients is not written over while a gradient holds
    it: two backward passes before a step give twice the gradient."""
    monkeypatch.setattr(sparse_module, "COMPILED_MIN_NNZ", 0)
    matrix = random_csr(n_rows=12, n_cols=20, density=0.4, seed=2)
    batch = SparseBatch.from_scipy(matrix)
    gen = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(20, 6, generator=gen))
    codes = torch.randn(12, 6, generator=gen)
    torch.sum(sampled_decode(batch, codes, weight, None, sparse_grad=True) ** 2).backward()
    once = weight.grad.to_dense().clone()
    torch.sum(sampled_decode(batch, codes, weight, None, sparse_grad=True) ** 2).backward()
    torch.testing.assert_close(weight.grad.to_dense(), 2 * once, rtol=1e-6, atol=1e-6)


def _member_and_pairs(variant: str, n_pairs: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """A small fitted network (no baseline, no validation) and ``n_pairs`` random
    (user, item) index pairs, repeats included."""
    from conftest import make_low_rank

    from autorec import AutoRec

    ratings = make_low_rank()
    model = AutoRec(variant=variant, hidden=12, epochs=3, validation=0.0, random_state=0,
                    device="cpu", baseline="none").fit(ratings)
    rng = np.random.default_rng(0)
    return (model.members_[0], rng.integers(0, ratings.n_users, n_pairs),
            rng.integers(0, ratings.n_items, n_pairs))


@compiled
@pytest.mark.parametrize("variant", ["item", "user"])
def test_compiled_pair_scoring_gives_torchs_reconstructions(monkeypatch, variant: str) -> None:
    """Past ``_KERNEL_PAIRS`` a member scores pairs with the compiled kernel, grouped by
    output: the same values as torch's gathers, to float32 rounding, in the pairs' order
    (repeated pairs and both orientations included)."""
    member, user_idx, item_idx = _member_and_pairs(variant, 5000)
    monkeypatch.setattr(member_module, "_KERNEL_PAIRS", 10**9)
    by_torch = member.reconstruct(user_idx, item_idx)
    monkeypatch.setattr(member_module, "_KERNEL_PAIRS", 1)
    by_kernel = member.reconstruct(user_idx, item_idx)
    np.testing.assert_allclose(by_kernel, by_torch, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(by_kernel, np.zeros_like(by_kernel))


def test_torch_pair_decoding_in_chunks_gives_the_same_values(monkeypatch) -> None:
    """Torch's path decodes ``_DECODE_PAIRS`` pairs at a time (its gathers bounded: they were
    the Netflix-shape run's peak); the chunking changes no value, and every pair is decoded
    once, in the pairs' order."""
    member, user_idx, item_idx = _member_and_pairs("item", 1000)
    monkeypatch.setattr(member_module, "_KERNEL_PAIRS", 10**9)
    whole = member.reconstruct(user_idx, item_idx)
    monkeypatch.setattr(member_module, "_DECODE_PAIRS", 7)  # 143 chunks, the last one short
    chunked = member.reconstruct(user_idx, item_idx)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-6)
    assert len(np.unique(whole)) > 100


@compiled
def test_a_products_result_is_its_own_not_the_shared_scratch(monkeypatch) -> None:
    """On one thread, the encoder product returned a view of the module's shared scratch: the
    next product (another batch, or another thread's call, e.g. two threads predicting)
    overwrote a result still in use."""
    monkeypatch.setattr(sparse_module, "COMPILED_MIN_NNZ", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = SparseBatch.from_scipy(random_csr(n_rows=30, n_cols=50, density=0.2, seed=1))
        second = SparseBatch.from_scipy(random_csr(n_rows=30, n_cols=50, density=0.2, seed=2))
        weight = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
        plan = _kernels.Plan(first.t_crow, first.t_col, first.t_perm, first.touched)
        result = _kernels.spmm(plan, first.values, weight, 30)
        kept = result.clone()
        other = _kernels.Plan(second.t_crow, second.t_col, second.t_perm, second.touched)
        _kernels.spmm(other, second.values, weight, 30)
        assert torch.equal(result, kept)
        dense = torch.from_numpy(random_csr(n_rows=30, n_cols=50, density=0.2,
                                            seed=1).toarray()).float()
        torch.testing.assert_close(result, dense @ weight, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(threads)
        _kernels.forget_last_plan()


@compiled
@pytest.mark.skipif(platform.machine().lower() not in {"x86_64", "amd64"},
                    reason="MXCSR is x86's")
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_take_subnormal_values_as_zero_and_leave_the_callers_mode(threads: int) -> None:
    """Subnormal float32 codes (a sigmoid below -87) cost Intel cores a microcode assist per
    vector instruction: the kernels flush them on their threads (FTZ, DAZ), and put each
    thread's own mode back, the caller's included (it runs a share of the work)."""
    tiny = np.float32(1e-39)  # subnormal: below np.finfo(np.float32).tiny
    assert 0 < tiny < np.finfo(np.float32).tiny
    matrix = sp.csr_matrix(np.ones((4, 6), dtype=np.float32))
    batch = SparseBatch.from_scipy(matrix)
    codes = torch.full((4, 3), float(tiny))
    codes[1] = 1.0
    weight = torch.ones(6, 3)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plan = _kernels.Plan(batch.t_crow, batch.t_col, batch.t_perm, batch.touched)
        out = _kernels.sddmm(plan, codes, weight, batch.nnz).reshape(4, 6)
        product = _kernels.spmm(plan, torch.full((batch.nnz,), float(tiny)), weight, 4)
    finally:
        torch.set_num_threads(saved)
        _kernels.forget_last_plan()
    assert torch.equal(out[1], torch.full((6,), 3.0))
    assert torch.count_nonzero(out[[0, 2, 3]]) == 0  # 3 x 1e-39 would be 3e-39 in IEEE
    assert torch.count_nonzero(product) == 0
    # this thread computes with subnormals again, in NumPy and in torch
    assert np.float32(tiny) * np.float32(2) == np.float32(2e-39)
    assert (torch.tensor([float(tiny)]) * 2).item() != 0.0


@pytest.mark.skipif(not _kernels.available(), reason="needs numba")
def test_the_compiled_adam_step_is_torchs_to_float32_rounding() -> None:
    """1 - beta2 was taken in float32 from a float32 beta2 (0.0009999871, not 0.001): the
    second moment was 1.3e-5 off torch's at the first step, 7e-5 by the third."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(200, 64, generator=generator)
    param = torch.nn.Parameter(start.clone())
    reference = torch.optim.Adam([param], lr=0.01, foreach=False)
    weight, exp_avg, exp_avg_sq = start.clone(), torch.zeros(200, 64), torch.zeros(200, 64)
    for step in range(1, 4):
        grad = torch.randn(200, 64, generator=generator)
        param.grad = grad.clone()
        reference.step()
        _kernels.adam_rows(_kernels.RowAdam(weight, exp_avg, exp_avg_sq, None, 0.01, 0.9,
                                            0.999, 1e-8, step), torch.arange(200), grad)
        state = reference.state[param]  # (the first moment sums terms of both signs)
        assert float(((exp_avg_sq - state["exp_avg_sq"]) / state["exp_avg_sq"]).abs().max()
                     ) < 1e-6
        assert float((exp_avg - state["exp_avg"]).abs().max()) < 1e-6 * float(
            state["exp_avg"].abs().max())
        assert float((weight - param.detach()).abs().max()) < 1e-6


_CACHE_KEY_PROBE = """
import hashlib
from numba.core.serialize import dumps
from autorec import _kernels
kernels = _kernels._numba()
for name, kernel in sorted(vars(kernels).items()):
    if hasattr(kernel, "py_func"):
        cells = tuple(cell.cell_contents for cell in kernel.py_func.__closure__ or ())
        print(name, hashlib.sha256(dumps(cells)).hexdigest())
"""


@pytest.mark.skipif(not _kernels.available(), reason="needs numba")
def test_every_kernels_disk_cache_key_is_the_same_in_every_process() -> None:
    """Numba's cache key hashes a kernel's closure; the Adam kernels held the compiled
    ``adam_row`` there, which pickles differently in each process, so every process compiled
    them afresh (seconds per fit) and added another copy to the cache on disk."""
    runs = [subprocess.run([sys.executable, "-c", _CACHE_KEY_PROBE], capture_output=True,
                           text=True, check=True).stdout for _ in range(2)]
    assert len(runs[0].splitlines()) >= 7
    assert runs[0] == runs[1]


@pytest.mark.skipif(not _kernels.available(), reason="needs numba")
def test_the_kernels_compile_without_a_disk_cache_where_none_is_writable(monkeypatch,
                                                                          caplog) -> None:
    """Numba refuses ``cache=True`` where no folder can hold its cache (a read-only install
    and home): every command failed with that traceback; the kernels are compiled in each
    process instead."""
    from autorec import _kernel_source

    real, calls = _kernel_source.compile_kernels, []

    def compile_kernels(numba: Any, cache: bool = True) -> Any:
        calls.append(cache)
        if cache:
            raise RuntimeError("cannot cache function 'adam_row': no locator available for "
                               "file '_kernel_source.py'")
        return real(numba, cache=False)

    monkeypatch.setattr(_kernel_source, "compile_kernels", compile_kernels)
    with caplog.at_level("WARNING", logger="autorec._kernels"):
        kernels = _kernels._numba.__wrapped__()
    assert calls == [True, False] and "compiled in each process" in caplog.text
    user, item = np.zeros(3), np.zeros(2)
    kernels.bias_passes(np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([1.0, -1.0, 2.0]),
                        user, item, np.ones(3), np.ones(2), 1)
    assert item.tolist() == [1.0, 1.0] and user.tolist() == [0.0, -2.0, 1.0]
