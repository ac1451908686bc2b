"""The Numba source of the compiled CPU kernels that :mod:`autorec._kernels` calls.

Each training kernel walks a batch's compact transpose (one entry per touched column: its
ratings' rows ``t_col`` and positions) split between threads by ``bounds``; see
:mod:`autorec._kernels` for what each computes and for the thread hand-over. ``bias_passes``
is :func:`autorec.baseline.fit_biases` on large data.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["ENV_KERNELS", "KERNEL_CHOICES", "compile_kernels"]

#: The environment variable that turns the compiled kernels off (``torch``), and its values
#: (unset or empty: ``numba``); here, where the command line reads them without torch.
ENV_KERNELS, KERNEL_CHOICES = "AUTOREC_KERNELS", ("numba", "torch")


def compile_kernels(numba: Any, cache: bool = True) -> Any:
    """The kernels compiled with ``numba`` (on first use; ``cache``: cached on disk), as
    attributes of one object, with ``numba`` itself."""
    # Numba's OpenMP layer where the system has libgomp, else its own thread pool, whose
    # sleeping workers are slow to wake on a virtual machine (BENCHMARKS.md, issue 15). The
    # system's libgomp is a second runtime beside torch's; their spinning workers do not meet
    # in a training epoch, where torch is on one thread (torch_threads_handed_over). Only
    # before Numba's first parallel call; NUMBA_THREADING_LAYER wins.
    if os.environ.get("NUMBA_THREADING_LAYER") is None:
        numba.config.THREADING_LAYER = "default"
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    njit = numba.njit
    prange = numba.prange
    options = {"parallel": True, "fastmath": True, "cache": cache, "nogil": True}
    # module globals, not closure cells: Numba's disk cache key hashes a kernel's closure,
    # and a compiled function (adam_row) pickles differently in every process, so a kernel
    # calling one from a closure was compiled afresh, and cached once more, by each process
    global flush_denormals, restore_fp_mode, adam_row
    from ._fp_mode import flush_denormals, restore_fp_mode

    @njit(fastmath=True, cache=cache, nogil=True, inline="always")
    def adam_row(weight, exp_avg, exp_avg_sq, u, g, d, betas, step_size,
                 correction2_sqrt, eps):  # pragma: no cover
        """Adam on ``weight[u]`` and its moments for the gradient row ``g`` plus
        ``d * weight[u]`` (torch's arithmetic). ``betas``: beta1, 1 - beta1, beta2,
        1 - beta2, each complement taken in double precision as torch takes it (in float32,
        1 - 0.999 is 1.3e-5 off: the second moment drifted from torch's by that much)."""
        beta1, rest1, beta2, rest2 = betas[0], betas[1], betas[2], betas[3]
        for h in range(weight.shape[1]):
            w = weight[u, h]
            gh = g[h] + d * w
            mh = beta1 * exp_avg[u, h] + rest1 * gh
            vh = beta2 * exp_avg_sq[u, h] + rest2 * gh * gh
            exp_avg[u, h] = mh
            exp_avg_sq[u, h] = vh
            weight[u, h] = w - step_size * mh / (np.sqrt(vh) / correction2_sqrt + eps)

    # Each loop over a column's ratings takes them two at a time: the touched weight row (or
    # gradient row) is then loaded and stored once per pair instead of once per rating. Arrays
    # are indexed in 2-D rather than through row views, which cost a reference count each.

    @njit(**options)
    def spmm_t(t_crow, t_col, vals_t, touched, weight, bounds, parts):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            parts[t] = 0.0
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    v0, v1 = vals_t[p], vals_t[p + 1]
                    for h in range(hidden):
                        w = weight[u, h]
                        parts[t, i0, h] += v0 * w
                        parts[t, i1, h] += v1 * w
                    p += 2
                if p < end:
                    i0, v0 = t_col[p], vals_t[p]
                    for h in range(hidden):
                        parts[t, i0, h] += v0 * weight[u, h]
            restore_fp_mode(mode)

    @njit(**options)
    def sddmm_t(t_crow, t_col, t_perm, touched, codes, weight, bounds, out):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    for h in range(hidden):
                        w = weight[u, h]
                        s0 += codes[i0, h] * w
                        s1 += codes[i1, h] * w
                    out[t_perm[p]] = s0
                    out[t_perm[p + 1]] = s1
                    p += 2
                if p < end:
                    i0 = t_col[p]
                    s0 = np.float32(0.0)
                    for h in range(hidden):
                        s0 += codes[i0, h] * weight[u, h]
                    out[t_perm[p]] = s0
            restore_fp_mode(mode)

    @njit(**options)
    def grad_rows_t(t_crow, t_col, vals_t, dense, bounds, out, out_rows,
                    accumulate):  # pragma: no cover
        hidden = dense.shape[1]
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            for j in range(bounds[t], bounds[t + 1]):
                o = out_rows[j]
                if not accumulate:
                    out[o] = 0.0
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    v0, v1 = vals_t[p], vals_t[p + 1]
                    for h in range(hidden):
                        out[o, h] += v0 * dense[i0, h] + v1 * dense[i1, h]
                    p += 2
                if p < end:
                    i0, v0 = t_col[p], vals_t[p]
                    for h in range(hidden):
                        out[o, h] += v0 * dense[i0, h]
            restore_fp_mode(mode)

    @njit(**options)
    def dec_backward_t(t_crow, t_col, grad_t, touched, codes, weight, bounds, out, out_rows,
                       accumulate, parts):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            parts[t] = 0.0
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                o = out_rows[j]
                if not accumulate:
                    out[o] = 0.0
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    g0, g1 = grad_t[p], grad_t[p + 1]
                    for h in range(hidden):
                        w = weight[u, h]
                        out[o, h] += g0 * codes[i0, h] + g1 * codes[i1, h]
                        parts[t, i0, h] += g0 * w
                        parts[t, i1, h] += g1 * w
                    p += 2
                if p < end:
                    i0, g0 = t_col[p], grad_t[p]
                    for h in range(hidden):
                        out[o, h] += g0 * codes[i0, h]
                        parts[t, i0, h] += g0 * weight[u, h]
            restore_fp_mode(mode)

    @njit(**options)
    def adam_t(weight, exp_avg, exp_avg_sq, rows, grad, decay, betas, step_size,
               correction2_sqrt, eps, bounds):  # pragma: no cover
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            for j in range(bounds[t], bounds[t + 1]):
                adam_row(weight, exp_avg, exp_avg_sq, rows[j], grad[j], decay[j], betas,
                         step_size, correction2_sqrt, eps)
            restore_fp_mode(mode)

    # The two gradient kernels again, each touched row's gradient summed into a row of
    # scratch and Adam applied to that weight row at once (the arithmetic of adam_t): the
    # gradient never leaves the cache, and no gradient array is written or read back.

    @njit(**options)
    def grad_rows_adam_t(t_crow, t_col, vals_t, touched, dense, bounds, weight, exp_avg,
                         exp_avg_sq, decay, betas, step_size, correction2_sqrt,
                         eps):  # pragma: no cover
        hidden = dense.shape[1]
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            g = np.empty(hidden, dtype=np.float32)
            for j in range(bounds[t], bounds[t + 1]):
                g[:] = 0.0
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    v0, v1 = vals_t[p], vals_t[p + 1]
                    for h in range(hidden):
                        g[h] += v0 * dense[i0, h] + v1 * dense[i1, h]
                    p += 2
                if p < end:
                    i0, v0 = t_col[p], vals_t[p]
                    for h in range(hidden):
                        g[h] += v0 * dense[i0, h]
                adam_row(weight, exp_avg, exp_avg_sq, touched[j], g, decay[j], betas,
                         step_size, correction2_sqrt, eps)
            restore_fp_mode(mode)

    @njit(**options)
    def dec_backward_adam_t(t_crow, t_col, grad_t, touched, codes, bounds, parts, weight,
                            exp_avg, exp_avg_sq, decay, betas, step_size,
                            correction2_sqrt, eps):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            mode = flush_denormals()
            parts[t] = 0.0
            g = np.empty(hidden, dtype=np.float32)
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                g[:] = 0.0
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    g0, g1 = grad_t[p], grad_t[p + 1]
                    for h in range(hidden):
                        w = weight[u, h]
                        g[h] += g0 * codes[i0, h] + g1 * codes[i1, h]
                        parts[t, i0, h] += g0 * w
                        parts[t, i1, h] += g1 * w
                    p += 2
                if p < end:
                    i0, g0 = t_col[p], grad_t[p]
                    for h in range(hidden):
                        g[h] += g0 * codes[i0, h]
                        parts[t, i0, h] += g0 * weight[u, h]
                # the row is read above before it is stepped here
                adam_row(weight, exp_avg, exp_avg_sq, u, g, decay[j], betas, step_size,
                         correction2_sqrt, eps)
            restore_fp_mode(mode)

    @njit(cache=cache, nogil=True)
    def bias_passes(user_idx, item_idx, centred, user, item, user_div, item_div,
                    n_iter):  # pragma: no cover
        """``fit_biases``'s alternating passes in place, in its order and arithmetic (a
        ``np.bincount`` adds its weights one after another): no temporaries, one walk over
        the ratings for each half pass."""
        for _ in range(n_iter):
            item[:] = 0.0
            for k in range(len(centred)):
                item[item_idx[k]] += centred[k] - user[user_idx[k]]
            for i in range(len(item)):
                item[i] /= item_div[i]
            user[:] = 0.0
            for k in range(len(centred)):
                user[user_idx[k]] += centred[k] - item[item_idx[k]]
            for u in range(len(user)):
                user[u] /= user_div[u]

    return SimpleNamespace(numba=numba, bias_passes=bias_passes, spmm_t=spmm_t,
                           sddmm_t=sddmm_t, grad_rows_t=grad_rows_t,
                           dec_backward_t=dec_backward_t, adam_t=adam_t,
                           grad_rows_adam_t=grad_rows_adam_t,
                           dec_backward_adam_t=dec_backward_adam_t)
