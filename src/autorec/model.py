"""The AutoRec network: tensors in, tensors out. Knows nothing of ids or data sets."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .sparse import SparseBatch, sampled_decode, sparse_linear

#: Every weight and mask is float32, whatever torch's default dtype (batches are float32).
_FLOAT = torch.float32

__all__ = ["ACTIVATIONS", "AutoRecNet", "decode_pairs"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
    "selu": nn.functional.selu,
    "identity": lambda x: x,
}


class AutoRecNet(nn.Module):
    """One hidden layer autoencoder over sparse rating vectors.

    For I-AutoRec each input row is one item's ratings over ``n_inputs`` users; for U-AutoRec
    one user's ratings over ``n_inputs`` items. The reconstruction is

    ``h(r) = W_dec @ dropout(g(W_enc^T @ r + b_enc)) + b_dec``

    with ``g`` the encoder activation and an identity decoder. Weights are stored one row per
    input (``encoder_weight`` and ``decoder_weight`` are both ``n_inputs x hidden``) so that
    the sparse kernels read contiguous rows. The reconstruction is computed only where the
    batch holds a rating (see :mod:`autorec.sparse`).

    Parameters
    ----------
    n_inputs
        Length of an input vector (users for I-AutoRec, items for U-AutoRec).
    hidden
        Hidden units.
    activation
        Encoder activation, a key of :data:`ACTIVATIONS`.
    dropout
        Probability of zeroing each hidden unit during training.
    decoder_bias
        Whether the decoder has a bias per output (``b_dec``). Models that add a baseline
        with per-user and per-item biases to the reconstruction leave it out.
    sparse_grad
        Give the two weight matrices (and ``b_dec``) row-sparse gradients that only cover the
        inputs and outputs a batch touches, for a lazy optimizer (see :mod:`autorec.sparse`).
    dense_batches
        Densify each batch (``n_rows x n_inputs``, never the whole matrix) and use dense
        matrix products, masked to the observed positions afterwards: on a GPU this can beat
        the sparse kernels when batches are not too sparse. Same values and gradients as the
        sparse path; dense gradients (not with ``sparse_grad``).
    generator
        Source of randomness for the initial weights; dropout takes its own generator at
        call time.

    Notes
    -----
    The initialisation follows the reference chapter: weights ``N(0, 0.01^2)``, biases
    uniform in ``±1/sqrt(fan_in)`` as ``torch.nn.Linear`` does.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: int = 500,
        activation: str = "sigmoid",
        dropout: float = 0.05,
        decoder_bias: bool = True,
        sparse_grad: bool = False,
        dense_batches: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        self.n_inputs = n_inputs
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        if sparse_grad and dense_batches:
            raise ValueError("dense_batches gives dense gradients: not with sparse_grad")
        self.sparse_grad = sparse_grad
        self.dense_batches = dense_batches
        self.encoder_weight = nn.Parameter(torch.empty(n_inputs, hidden, dtype=_FLOAT))
        self.encoder_bias = nn.Parameter(torch.empty(hidden, dtype=_FLOAT))
        self.decoder_weight = nn.Parameter(torch.empty(n_inputs, hidden, dtype=_FLOAT))
        self.decoder_bias = (nn.Parameter(torch.empty(n_inputs, dtype=_FLOAT)) if decoder_bias
                             else None)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the initial weights (see Notes in the class docstring)."""
        self.encoder_weight.normal_(0.0, 0.01, generator=generator)
        self.decoder_weight.normal_(0.0, 0.01, generator=generator)
        bound_enc = 1.0 / math.sqrt(self.n_inputs)
        bound_dec = 1.0 / math.sqrt(self.hidden)
        self.encoder_bias.uniform_(-bound_enc, bound_enc, generator=generator)
        if self.decoder_bias is not None:
            self.decoder_bias.uniform_(-bound_dec, bound_dec, generator=generator)

    def encode(self, batch: SparseBatch, generator: torch.Generator | None = None) -> Tensor:
        """Hidden representation (``n_rows x hidden``) of each row of ``batch``.

        In training mode dropout is applied, drawing its mask from ``generator``.
        """
        if self.dense_batches:
            pre = batch.csr().to_dense() @ self.encoder_weight + self.encoder_bias
        else:
            pre = sparse_linear(batch, self.encoder_weight, self.encoder_bias,
                                sparse_grad=self.sparse_grad)
        hidden = ACTIVATIONS[self.activation](pre)
        if self.training and self.dropout > 0.0:
            keep = torch.rand(hidden.shape, generator=generator, device=hidden.device,
                              dtype=_FLOAT)
            hidden = hidden * (keep >= self.dropout) / (1.0 - self.dropout)
        return hidden

    def forward(self, batch: SparseBatch, generator: torch.Generator | None = None,
                input_dropout: float = 0.0) -> Tensor:
        """Reconstructions at the observed positions of ``batch``, in CSR order.

        ``input_dropout`` (training only) zeroes each observed input rating with that
        probability before encoding and scales the kept ones by ``1 / (1 - p)``; the
        reconstruction targets stay complete, so the network learns to predict a rating from
        the others (a denoising autoencoder).
        """
        return self.decode_batch(batch, self.code(batch, generator, input_dropout))

    def code(self, batch: SparseBatch, generator: torch.Generator | None = None,
             input_dropout: float = 0.0) -> Tensor:
        """The hidden code :meth:`forward` decodes (``n_rows x hidden``): the input dropout,
        then :meth:`encode`; with the same draws from ``generator`` as :meth:`forward`."""
        encoded = batch
        if self.training and input_dropout > 0.0:
            keep = torch.rand(batch.nnz, generator=generator, device=batch.values.device,
                              dtype=_FLOAT)
            encoded = batch.with_values(batch.values * (keep >= input_dropout)
                                        / (1.0 - input_dropout))
        return self.encode(encoded, generator)

    def decode_batch(self, batch: SparseBatch, hidden: Tensor) -> Tensor:
        """The reconstructions at the observed positions of ``batch`` (CSR order) from the
        rows' codes ``hidden``: the second half of :meth:`forward`."""
        if self.dense_batches:
            full = hidden @ self.decoder_weight.t()
            if self.decoder_bias is not None:
                full = full + self.decoder_bias
            return full[batch.row, batch.col]
        return sampled_decode(batch, hidden, self.decoder_weight, self.decoder_bias,
                              sparse_grad=self.sparse_grad)

    def decode_pairs(self, hidden: Tensor, rows: Tensor, outputs: Tensor) -> Tensor:
        """Reconstruction of output ``outputs[k]`` for the row whose code is ``hidden[rows[k]]``."""
        return decode_pairs(hidden, rows, self.decoder_weight, self.decoder_bias, outputs)


def decode_pairs(hidden: Tensor, rows: Tensor, weight: Tensor, bias: Tensor | None,
                 outputs: Tensor) -> Tensor:
    """:meth:`AutoRecNet.decode_pairs` with a decoder given as tensors (a fold-in's fitted
    row scores here exactly as it does once added to the network)."""
    out = torch.einsum("kh,kh->k", hidden.index_select(0, rows),
                       weight.index_select(0, outputs))
    if bias is not None:
        out = out + bias.index_select(0, outputs)
    return out
