"""The rating networks as a model family: an AutoRec :class:`~autorec.member.Member` that
satisfies :class:`autorec.family.ScoringNetwork`.

:class:`RatingNetwork` adds to a trained member what the layers above training ask of it:
scoring a block of users against candidate items (:mod:`autorec.recommend`), folding a
newcomer in (:mod:`autorec.foldin`; the method is described there) and its arrays for a model
folder (:mod:`autorec.persist`). Block scores use the hidden codes of every input row, cached
per network (:meth:`RatingNetwork.row_codes`) and recomputed when its weights or inputs change.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .family import FAMILIES, ArraySource
from .member import Member, NetworkSpec, same_key
from .model import AutoRecNet, decode_pairs
from .sparse import SparseBatch

__all__ = ["NET_TENSORS", "RatingNetwork", "ridge_row"]

#: A network's weight tensors, as saved (``decoder_bias`` only when it has one).
NET_TENSORS = ("encoder_weight", "encoder_bias", "decoder_weight", "decoder_bias")
_DECODE_PAIRS = 1 << 16  # outputs decoded per step for a newcomer

#: network -> (what the codes were computed from, the codes); an entry whose network, weights
#: or input matrix are no longer the same objects (or were changed in place) is recomputed.
_codes_cache: weakref.WeakKeyDictionary[Member, tuple[tuple[Any, ...], torch.Tensor]] = (
    weakref.WeakKeyDictionary())


@dataclass(frozen=True)
class _Grown:
    """How one network grows when a newcomer is added."""

    encoded: bool  # True: a new input row; False: a new input column and decoder row
    inputs: np.ndarray  # float32 input values (ratings / scale) at ``index``
    decoder_row: torch.Tensor | None = None
    decoder_bias: torch.Tensor | None = None


class RatingNetwork(Member):
    """A trained AutoRec network (I-AutoRec or U-AutoRec) as a :class:`ScoringNetwork`."""

    family = "autorec"

    # -- scoring -------------------------------------------------------------------------------
    def predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.reconstruct(user_idx, item_idx)

    def row_codes(self) -> torch.Tensor:
        """Hidden codes of every input row (items for I-AutoRec), cached."""
        assert self.net is not None and self.matrix is not None
        net, matrix = self.net, self.matrix
        signature = (net, matrix, net.encoder_weight, net.encoder_bias, matrix.shape,
                     matrix.nnz, net.encoder_weight._version, net.encoder_bias._version,
                     net.encoder_weight.device)
        cached = _codes_cache.get(self)
        if cached is not None and same_key(cached[0], signature, 4):
            return cached[1]
        codes = self.encode_rows(np.arange(matrix.shape[0]))
        _codes_cache[self] = (signature, codes)
        return codes

    def score_block(self, users: np.ndarray, items: np.ndarray, out: torch.Tensor,
                    weight: float) -> None:
        """One dense product: I-AutoRec (rows are items) ``W_dec[users] @ codes[items].T``,
        U-AutoRec ``codes[users] @ W_dec[items].T``, plus the decoder bias, with the weight
        and the network's scale folded into the smaller factor."""
        net = self.net
        assert net is not None
        factor = float(weight) * self.scale
        users_t = torch.from_numpy(users).to(self.device)
        items_t = torch.from_numpy(items).to(self.device)
        by_item = self.spec.variant == "item"
        with torch.no_grad():
            if by_item:  # rows are items: decoder rows are users
                left = net.decoder_weight.index_select(0, users_t) * factor
                right = self.row_codes().index_select(0, items_t)
            else:  # rows are users: decoder rows are items
                left = self.encode_rows(users) * factor
                right = net.decoder_weight.index_select(0, items_t)
            if net.decoder_bias is not None:
                bias = (factor * net.decoder_bias.index_select(0, users_t if by_item else items_t)
                        .double()).float()
                out += bias[:, None] if by_item else bias[None, :]
            out.addmm_(left, right.T)

    def seen(self) -> sp.csr_matrix:
        matrix = self.matrix
        assert matrix is not None
        seen = matrix.T.tocsr() if self.spec.variant == "item" else matrix.tocsr(copy=True)
        seen.sort_indices()
        if self.scale != 1.0:  # the inputs are ratings / scale
            seen.data = (seen.data.astype(np.float64) * self.scale).astype(np.float32)
        return seen

    # -- fold-in (the method: autorec.foldin) ---------------------------------------------------
    def fold_in(self, side: str, index: np.ndarray, values: np.ndarray, targets: np.ndarray,
                reg: float) -> tuple[np.ndarray, _Grown]:
        if self.spec.variant == side:
            return self._encode(index, values)
        return self._ridge(index, values, targets, reg)

    def _encode(self, index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, _Grown]:
        """The encoded side: the newcomer's ratings through the encoder, decoded for all
        outputs."""
        net = self.net
        assert net is not None
        inputs = values.astype(np.float32) / self.scale  # as Member.set_inputs stores them
        batch = SparseBatch.from_arrays(np.array([0, len(index)], dtype=np.int64), index,
                                        inputs, self.n_inputs, self.device, transpose=False)
        n_out = self.n_inputs
        result = np.empty(n_out, dtype=np.float64)
        net.eval()
        with torch.no_grad():
            code = net.encode(batch)
            outputs = torch.arange(n_out, device=self.device)
            for start in range(0, n_out, _DECODE_PAIRS):
                chunk = outputs[start:start + _DECODE_PAIRS]
                rows = torch.zeros(len(chunk), dtype=torch.int64, device=self.device)
                result[start:start + len(chunk)] = net.decode_pairs(code, rows, chunk).double() \
                    .cpu().numpy()
        return result * self.scale, _Grown(encoded=True, inputs=inputs)

    def _ridge(self, index: np.ndarray, values: np.ndarray, targets: np.ndarray,
               reg: float) -> tuple[np.ndarray, _Grown]:
        """The decoded side: a decoder row fitted on the codes of the rated rows, then applied
        to the codes of every row."""
        net, matrix = self.net, self.matrix
        assert net is not None and matrix is not None
        all_codes = self.row_codes()
        codes = all_codes.index_select(0, torch.from_numpy(index).to(self.device))
        row, bias = ridge_row(codes, targets / self.scale, reg,
                              intercept=net.decoder_bias is not None)
        device = self.device
        row_t = torch.as_tensor(row, dtype=torch.float32, device=device).unsqueeze(0)
        bias_t = (torch.tensor([bias], dtype=torch.float32, device=device)
                  if net.decoder_bias is not None else None)
        n_rows = matrix.shape[0]
        result = np.empty(n_rows, dtype=np.float64)
        with torch.no_grad():
            for start in range(0, n_rows, _DECODE_PAIRS):
                rows = torch.arange(start, min(start + _DECODE_PAIRS, n_rows), device=device)
                new = torch.zeros(len(rows), dtype=torch.int64, device=device)
                result[start:start + len(rows)] = decode_pairs(all_codes, rows, row_t, bias_t,
                                                               new).double().cpu().numpy()
        inputs = values.astype(np.float32) / self.scale
        return result * self.scale, _Grown(encoded=False, inputs=inputs, decoder_row=row_t,
                                           decoder_bias=bias_t)

    def grow(self, side: str, index: np.ndarray, growth: _Grown) -> None:
        """A new input row (the encoded side), or a new input column with a zero encoder row
        and the fitted decoder row (the other side)."""
        net, matrix = self.net, self.matrix
        assert net is not None and matrix is not None
        if side == "user":
            self.n_users += 1
        else:
            self.n_items += 1
        if growth.encoded:  # a new input row
            row = sp.csr_matrix((growth.inputs, index, np.array([0, len(index)])),
                                shape=(1, matrix.shape[1]))
            self.matrix = sp.vstack([matrix, row], format="csr")
            return
        column = sp.csr_matrix((growth.inputs, (index, np.zeros(len(index), dtype=np.int64))),
                               shape=(matrix.shape[0], 1))
        grown_matrix = sp.hstack([matrix, column], format="csr")
        grown_matrix.sort_indices()
        self.matrix = grown_matrix
        assert growth.decoder_row is not None
        with torch.no_grad():
            zeros = torch.zeros_like(net.encoder_weight[:1])
            net.encoder_weight = nn.Parameter(torch.cat([net.encoder_weight, zeros]))
            net.decoder_weight = nn.Parameter(torch.cat([net.decoder_weight,
                                                         growth.decoder_row]))
            if net.decoder_bias is not None:
                assert growth.decoder_bias is not None
                net.decoder_bias = nn.Parameter(torch.cat([net.decoder_bias,
                                                           growth.decoder_bias]))
        net.n_inputs += 1

    def describe(self) -> dict[str, Any]:
        return {"variant": self.spec.variant, "hidden": self.spec.hidden,
                "activation": self.spec.activation}

    # -- arrays --------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Weights (``float32``) and the training ratings it reconstructs from, as CSR in its
        orientation divided by its scale (``inputs.indptr``, ``inputs.indices``,
        ``inputs.data``)."""
        assert self.net is not None and self.matrix is not None
        arrays = {name: getattr(self.net, name).detach().cpu().numpy()
                  for name in NET_TENSORS if getattr(self.net, name) is not None}
        for part in ("indptr", "indices", "data"):
            arrays[f"inputs.{part}"] = np.asarray(getattr(self.matrix, part))
        return arrays

    @property
    def params(self) -> dict[str, Any]:
        assert self.net is not None and self.matrix is not None
        return {
            "spec": asdict(self.spec),
            "n_inputs": int(self.net.n_inputs),
            "decoder_bias": self.net.decoder_bias is not None,
            "sparse_grad": bool(self.net.sparse_grad),
            "inputs_shape": list(self.matrix.shape),
            "scale": float(self.scale),
            "best_epoch": int(self.best_epoch),
            "history": self.history,
        }

    @classmethod
    def from_arrays(cls, arrays: ArraySource, params: dict[str, Any], *, n_users: int,
                    n_items: int, device: torch.device) -> RatingNetwork:
        """The network that :meth:`to_arrays` and :attr:`params` describe (``params``
        checked by :mod:`autorec.persist`), on ``device``."""
        spec_names = {f.name for f in fields(NetworkSpec)}
        spec = NetworkSpec(**{name: value for name, value in params["spec"].items()
                              if name in spec_names})
        network = cls(spec, n_users, n_items, device)
        net = AutoRecNet(int(params["n_inputs"]), spec.hidden, spec.activation, spec.dropout,
                         decoder_bias=bool(params["decoder_bias"]),
                         sparse_grad=bool(params.get("sparse_grad", False)),
                         dense_batches=spec.dense_batches)
        with torch.no_grad():
            for name in NET_TENSORS:
                parameter = getattr(net, name)
                if parameter is not None:
                    value = arrays.get(name, tuple(parameter.shape), np.float32)
                    parameter.data = torch.from_numpy(value)
        network.net = net.to(device).eval()
        shape = tuple(int(v) for v in params["inputs_shape"])
        network.matrix = _csr(arrays, "inputs", shape)
        network.scale = float(params["scale"])
        network.best_epoch = int(params["best_epoch"])
        network.history = list(params["history"])
        return network


FAMILIES[RatingNetwork.family] = RatingNetwork


def _csr(arrays: ArraySource, prefix: str, shape: tuple[int, ...]) -> sp.csr_matrix:
    indptr = arrays.get(f"{prefix}.indptr", (shape[0] + 1,))
    indices = arrays.get(f"{prefix}.indices")
    data = arrays.get(f"{prefix}.data", (len(indices),), np.float32)
    if (indptr.dtype.kind != "i" or indices.dtype.kind != "i" or indptr[0] != 0
            or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0)
            or (len(indices) and (indices.min() < 0 or indices.max() >= shape[1]))):
        arrays.invalid(prefix, f"is not a valid CSR matrix of shape {shape}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def ridge_row(codes: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, reg: float,
              *, intercept: bool = False) -> tuple[np.ndarray, float]:
    """The decoder row (and bias) that best reconstructs ``targets`` from fixed ``codes``.

    Minimises ``||targets - codes @ w - b||^2 + reg * ||w||^2`` in closed form: the solution
    of ``(X^T X + reg * D) x = X^T y`` with ``X = [codes, 1]`` and ``D`` the identity without
    its last diagonal entry, i.e. the bias ``b`` is not penalised. ``intercept=False`` fixes
    ``b = 0`` (a residual network's decoder has no bias). Computed in float64, as: ``b`` from
    the centred problem (``b = mean(y) - mean(codes) @ w``), and ``w`` from whichever normal
    equations are smaller, ``(C^T C + reg I) w = C^T y_c`` (``hidden x hidden``) or
    ``w = C^T (C C^T + reg I)^-1 y_c`` (``n x n``, for a newcomer with fewer ratings than
    hidden units), ``C`` and ``y_c`` the centred codes and targets, by Cholesky. Torch does
    the algebra, on the device of ``codes`` when it is a tensor, with torch's threads.

    Parameters
    ----------
    codes
        ``n x hidden`` hidden codes of the rows the newcomer rated.
    targets
        ``n`` values to reconstruct.
    reg
        Ridge penalty, ``>= 0``; with ``0`` the least-squares solution of smallest ``||w||``.
    intercept
        Fit the unpenalised bias ``b`` too.

    Returns
    -------
    (numpy.ndarray, float)
        ``w`` (``hidden``) and ``b`` (``0.0`` without ``intercept``).
    """
    codes_t = torch.as_tensor(codes).to(torch.float64)
    targets_t = torch.as_tensor(targets).to(device=codes_t.device, dtype=torch.float64)
    n, hidden = codes_t.shape
    if targets_t.shape != (n,):
        raise ValueError(f"targets must have one value per row of codes ({n}), got shape "
                         f"{tuple(targets_t.shape)}")
    if not (math.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a number >= 0, got {reg!r}")
    centre = torch.zeros(hidden, dtype=torch.float64, device=codes_t.device)
    target_centre = torch.zeros((), dtype=torch.float64, device=codes_t.device)
    if intercept and n:
        centre, target_centre = codes_t.mean(dim=0), targets_t.mean()
    centred = codes_t - centre
    centred_targets = (targets_t - target_centre).unsqueeze(1)
    row = None
    if reg > 0:
        small = n < hidden
        gram = centred @ centred.T if small else centred.T @ centred
        gram.diagonal().add_(reg)
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info) == 0:
            if small:
                row = centred.T @ torch.cholesky_solve(centred_targets, factor)
            else:
                row = torch.cholesky_solve(centred.T @ centred_targets, factor)
    if row is None:  # reg == 0, or a system too ill-conditioned to factor: least squares
        design, rhs = centred, centred_targets
        if reg > 0:
            eye = torch.eye(hidden, dtype=torch.float64, device=codes_t.device)
            design = torch.cat([centred, math.sqrt(reg) * eye])
            rhs = torch.cat([centred_targets, torch.zeros((hidden, 1), dtype=torch.float64,
                                                          device=codes_t.device)])
        row = torch.linalg.pinv(design) @ rhs  # the minimum-norm solution
    row = row.squeeze(1)
    bias = float(target_centre - centre @ row) if intercept else 0.0
    return row.cpu().numpy(), bias
