"""The optimizers: which one a network trains with, fused Adam, and lazy Adam.

:func:`choose_optimizer` resolves ``optimizer="auto"`` from the share of input rows a batch
touches; :func:`fused_adam` is PyTorch's Adam in one kernel per step.

:class:`LazyAdam` updates only the rows a row-sparse gradient holds (the inputs and outputs a
batch touches, :mod:`autorec.sparse`): it gathers those rows of the weights and of Adam's two
moments, applies PyTorch's own (fused, where available) Adam update to them, and scatters them
back; other rows keep their weights and moments, as in ``torch.optim.SparseAdam`` (three times
slower on CPU) and TensorFlow's LazyAdam. Dense gradients (the encoder bias) get the ordinary
update. Where the compiled kernels run (:mod:`autorec._kernels`: CPU, at least
:data:`COMPILED_MIN_VALUES` gradient values) the touched rows are updated in place instead.

An L2 term per row can be folded into the update (:meth:`LazyAdam.set_row_decay`): the
gradient of row ``j`` becomes ``grad[j] + decay[j] * weight[j]`` inside the step, which is what
adding the penalty's gradient to the sparse gradient beforehand gives, without building it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.optim.adam import adam

from . import _kernels
from .sparse import slice_rows

__all__ = ["AUTO_DENSE_SHARE", "COMPILED_MIN_VALUES", "LazyAdam", "choose_optimizer", "fused_adam",
           "row_step", "touched_share"]

log = logging.getLogger(__name__)

#: Gradient values (touched rows x hidden) from which a sparse step runs in the compiled
#: kernel (ML-100K's 943 x 500 stay on torch's fused kernel and need no compilation).
COMPILED_MIN_VALUES = 1 << 20


#: ``auto`` picks ``adam`` when a batch touches at least this share of the input rows on
#: average, else ``lazy_adam`` (see :func:`choose_optimizer`).
AUTO_DENSE_SHARE = 0.9

#: Batches sampled by :func:`choose_optimizer`.
_AUTO_SAMPLE_BATCHES = 16


def touched_share(matrix: sp.csr_matrix, batch_size: int, seed: int,
                  n_batches: int = _AUTO_SAMPLE_BATCHES) -> float:
    """Mean share of the columns (input rows of the weights) that a batch of ``batch_size``
    random non-empty rows of ``matrix`` touches, over ``n_batches`` sampled batches."""
    indptr = np.asarray(matrix.indptr, dtype=np.int64)
    rows = np.flatnonzero(np.diff(indptr) > 0)
    n_cols = matrix.shape[1]
    if len(rows) == 0 or n_cols == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    shares = []
    for start in range(0, min(len(order), n_batches * batch_size), batch_size):
        _, positions = slice_rows(indptr, order[start:start + batch_size])
        shares.append(len(np.unique(matrix.indices[positions])) / n_cols)
    return float(np.mean(shares))


def choose_optimizer(name: str, matrix: sp.csr_matrix, batch_size: int, seed: int, *,
                     weight_decay: float = 0.0, dense_batches: bool = False) -> str:
    """The optimizer a network trains with: ``name`` itself unless it is ``auto``.

    ``auto`` measures the share of input rows a batch touches (:func:`touched_share`, on a
    sample of batches) and picks ``lazy_adam`` below :data:`AUTO_DENSE_SHARE` (it then
    updates only those rows: what makes sparse sets fast), ``adam`` from it on (nearly every
    row is touched anyway, and the fused dense update over whole tensors is cheaper than
    updating rows one by one); ``adam`` also where the settings need dense gradients
    (``weight_decay``, ``dense_batches``). The choice is logged.
    """
    if name != "auto":
        return name
    if weight_decay or dense_batches:
        chosen, why = "adam", ("weight_decay is Adam's" if weight_decay
                               else "dense_batches gives dense gradients")
    else:
        share = touched_share(matrix, batch_size, seed)
        chosen = "adam" if share >= AUTO_DENSE_SHARE else "lazy_adam"
        why = (f"a batch of {batch_size} rows touches {100 * share:.1f} % of the "
               f"{matrix.shape[1]:,} input rows on average "
               f"({'>=' if chosen == 'adam' else '<'} {100 * AUTO_DENSE_SHARE:.0f} %)")
    log.info("optimizer auto: %s (%s)", chosen, why)
    return chosen


def fused_adam(params: list[torch.nn.Parameter], lr: float, weight_decay: float
          ) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where this torch build supports it (faster than the
    per-tensor loop, BENCHMARKS.md; the same update).

    One parameter group per parameter, in the network's order (so a state dict numbers them as
    one group would): the trainer sets the weights' groups' ``weight_decay`` at each step to
    fold the L2 penalty in.
    """
    groups = [{"params": [param]} for param in params]
    try:
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def row_step(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter
             ) -> Callable[[], _kernels.RowAdam] | None:
    """A function that starts this step's update of ``param`` (a CPU float32 weight) for a
    compiled gradient kernel, which steps each row as soon as its gradient is summed
    (:func:`autorec.sparse.rows_stepped_in_backward`); ``None`` where ``optimizer`` has none.

    :class:`LazyAdam`: its touched rows, with the row decay of :meth:`LazyAdam.set_row_decay`
    (aligned with the rows the sparse gradient would hold, the order in which the kernel
    steps them); the kernel then does the arithmetic of :meth:`LazyAdam.step` on those rows.
    :class:`torch.optim.Adam` (not AMSGrad, not maximising): every row, with the group's
    ``weight_decay`` (coupled, as torch's), so that the kernel's step is the optimizer's own
    to float32 rounding. Either way the state in ``optimizer.state`` is created as the
    optimizer creates it and counts the step, so that a later ``step`` or checkpoint carries
    on from it; a parameter stepped this way has no gradient, so ``step`` leaves it alone.
    """
    lazy = isinstance(optimizer, LazyAdam)
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    if not lazy and (type(optimizer) is not torch.optim.Adam or group["amsgrad"]
                     or group["maximize"] or isinstance(group["lr"], torch.Tensor)):
        return None

    def start() -> _kernels.RowAdam:
        state = _adam_state(optimizer.state[param], param)
        state["step"] += 1
        if isinstance(optimizer, LazyAdam):
            return _row_adam(param, group, state, optimizer._row_decay.pop(param, None))
        return _row_adam(param, group, state, float(group["weight_decay"]), all_rows=True)

    return start


def _adam_state(state: dict[str, Any], param: torch.nn.Parameter) -> dict[str, Any]:
    """Adam's state of ``param`` (``state``), created as torch creates it where empty."""
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return state


def _row_adam(param: torch.nn.Parameter, group: dict[str, Any], state: dict[str, Any],
              decay: torch.Tensor | float | None, all_rows: bool = False) -> _kernels.RowAdam:
    """The compiled kernels' Adam step of ``param``'s rows, ``state["step"]`` counting this
    step."""
    beta1, beta2 = group["betas"]
    return _kernels.RowAdam(param.detach(), state["exp_avg"], state["exp_avg_sq"], decay,
                            lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                            step=int(state["step"]), all_rows=all_rows)


class LazyAdam(torch.optim.Optimizer):
    """Adam over the rows present in each gradient.

    Parameters
    ----------
    params
        Parameters whose gradients are row-sparse COO tensors (coalesced) or dense tensors.
    lr, betas, eps
        As :class:`torch.optim.Adam`. Bias correction uses the number of steps taken, for
        every row alike.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self._fused: bool | None = None
        self._row_decay: dict[torch.Tensor, torch.Tensor] = {}

    def set_row_decay(self, param: torch.nn.Parameter, decay: torch.Tensor) -> None:
        """Add ``decay[j] * param[row_j]`` to the gradient of each row ``row_j`` that
        ``param``'s next sparse gradient holds (``decay`` aligned with those rows), in the next
        :meth:`step` only: an L2 penalty's gradient, folded into the update."""
        self._row_decay[param] = decay

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                state = _adam_state(self.state[param], param)
                # the functional update counts the step itself, on a copy of ours
                step = state["step"].clone()
                state["step"] += 1
                if grad.is_sparse:
                    if not grad.is_coalesced():
                        grad = grad.coalesce()
                    rows = grad._indices()[0]
                    values = grad._values()
                    decay = self._row_decay.pop(param, None)
                    if (values.numel() >= COMPILED_MIN_VALUES and param.dim() == 2
                            and param.device.type == "cpu"
                            and param.dtype == torch.float32 and _kernels.available()):
                        _kernels.adam_rows(_row_adam(param, group, state, decay), rows,
                                           values)
                        continue
                    weight = param.index_select(0, rows)
                    if decay is not None:
                        values = values + decay.unsqueeze(1) * weight
                    exp_avg = state["exp_avg"].index_select(0, rows)
                    exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
                    self._update(weight, values, exp_avg, exp_avg_sq, step, group, beta1,
                                 beta2)
                    param.index_copy_(0, rows, weight)
                    state["exp_avg"].index_copy_(0, rows, exp_avg)
                    state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
                else:
                    self._row_decay.pop(param, None)
                    self._update(param, grad, state["exp_avg"], state["exp_avg_sq"], step,
                                 group, beta1, beta2)

    def _update(self, weight: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
                exp_avg_sq: torch.Tensor, step: torch.Tensor, group: dict[str, Any],
                beta1: float, beta2: float) -> None:
        options = {"amsgrad": False, "beta1": beta1, "beta2": beta2, "lr": group["lr"],
                   "weight_decay": 0.0, "eps": group["eps"], "maximize": False}
        if self._fused is not False:
            try:
                adam([weight], [grad], [exp_avg], [exp_avg_sq], [], [step.clone()], fused=True,
                     **options)  # type: ignore[arg-type]
                self._fused = True
                return
            except (RuntimeError, TypeError):  # no fused kernel on this device or build
                if self._fused:
                    raise
                self._fused = False
        adam([weight], [grad], [exp_avg], [exp_avg_sq], [], [step.clone()], foreach=False,
             **options)  # type: ignore[arg-type]
