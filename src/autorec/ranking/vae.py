"""Mult-VAE / Mult-DAE: an autoencoder over a user's whole item row with a multinomial
likelihood (Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative
Filtering", WWW 2018).

The network (:class:`MultVAENet`) encodes a user's L2-normalised row (entries dropped with
probability ``dropout`` while training) through ``tanh`` layers to a code (a Gaussian's mean
and log-variance for the VAE, a point for the DAE) and decodes it to logits over every item.
A user's loss is ``-sum_i x_ui log softmax(logits)_i`` plus, for the VAE, ``beta`` times the
KL divergence to a standard normal, ``beta`` annealed linearly from 0 to ``beta_max`` (the
paper's annealing, capped). :class:`MultVAE` densifies a batch of users at a time, never the
whole matrix, and keeps the epoch with the best validation NDCG@k when given a validation
part. A user is scored, and a new user folded in, by encoding its row (the mean code).
Memory grows with the items (two ``n_items x hidden`` layers, plus Adam's moments while
training), never with users x items.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ..exceptions import NotFittedError

__all__ = ["MultVAE", "MultVAENet"]

log = logging.getLogger(__name__)


class MultVAENet(nn.Module):
    """``n_items -> hidden -> latent (-> hidden) -> n_items`` with ``tanh`` between layers.

    ``hidden=0`` drops the hidden layers (``n_items -> latent -> n_items``). ``variational``:
    the encoder gives a mean and a log-variance (Mult-VAE), else a point (Mult-DAE).
    """

    def __init__(self, n_items: int, hidden: int = 600, latent: int = 200,
                 variational: bool = True) -> None:
        super().__init__()
        self.variational = variational
        encoder_out = 2 * latent if variational else latent

        def linear(n_in: int, n_out: int) -> nn.Linear:
            # not initialised here (reset_parameters or loading): torch's own initialisation
            # would draw from the global generator, which a fit leaves alone (README)
            return nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=torch.float32)

        sizes = [n_items, hidden] if hidden else [n_items]
        self.encoder = nn.ModuleList(linear(a, b) for a, b in pairwise([*sizes, encoder_out]))
        self.decoder = nn.ModuleList(linear(a, b) for a, b in pairwise([latent, *sizes[::-1]]))
        self.latent = latent

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weights, small normal biases (as the paper's code), from
        ``generator``."""
        for layer in [*self.encoder, *self.decoder]:
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.normal_(layer.bias, std=0.001, generator=generator)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean and log-variance (``None`` for the DAE) of the code of normalised rows."""
        h = _layers(self.encoder, x)
        if self.variational:
            return h[:, :self.latent], h[:, self.latent:]
        return h, None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits over every item."""
        return _layers(self.decoder, z)


def _layers(layers: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    """``layers`` in turn, ``tanh`` between them."""
    for k, layer in enumerate(layers):
        h = layer(h)
        if k < len(layers) - 1:
            h = torch.tanh(h)
    return h


@dataclasses.dataclass(eq=False)
class MultVAE:
    """Mult-VAE (or Mult-DAE) ranking model over a users x items implicit matrix.

    Parameters
    ----------
    hidden, latent
        Widths of the hidden layer and of the code (the paper's 600 and 200); ``hidden=0``:
        no hidden layer.
    variational
        ``True``: Mult-VAE (annealed KL); ``False``: Mult-DAE.
    dropout
        Probability of dropping each input entry while training (the paper's 0.5).
    beta_max, anneal_steps
        The KL weight rises linearly from 0 by ``1 / anneal_steps`` per update up to
        ``beta_max`` (VAE only).
    lr, weight_decay
        Adam's learning rate and (coupled) L2 term.
    epochs
        Most epochs. With a validation part, the best epoch by NDCG@``k`` is kept, and training
        stops after ``patience`` epochs without a better one.
    batch_size
        Users per update (each batch is densified over the modelled items).
    patience
        See ``epochs``.
    max_items
        Model at most this many items, the most-rated ones (``None``: every rated item); the
        other items are never recommended.
    random_state
        Seed of the initial weights, the shuffling, the dropout masks and the sampled codes.

    Attributes
    ----------
    net_ : MultVAENet
        The trained network (on the CPU, in evaluation mode).
    items_ : numpy.ndarray
        Column indices of the modelled items.
    n_items_ : int
        Columns of the training matrix.
    best_epoch_ : int
        Epochs of the kept weights.
    history_ : list of dict
        ``epoch``, ``loss`` (mean per user), ``seconds`` and, with a validation part,
        ``validation_ndcg``.
    """

    hidden: int = 600
    latent: int = 200
    variational: bool = True
    dropout: float = 0.5
    beta_max: float = 0.2
    anneal_steps: int = 20_000
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 100
    batch_size: int = 500
    patience: int = 10
    max_items: int | None = None
    random_state: int | None = 0

    @property
    def params(self) -> dict[str, Any]:
        """Hyperparameters (JSON values)."""
        return dataclasses.asdict(self)

    def _validate(self) -> None:
        for name in ("hidden", "latent", "epochs", "batch_size", "patience", "anneal_steps"):
            value = getattr(self, name)
            low = 0 if name == "hidden" else 1
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.variational, bool):
            raise ValueError(f"variational must be true or false, got {self.variational!r}")
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float)
                or not 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        from .ease import check_max_items

        check_max_items(self.max_items)

    def fit(self, matrix: sp.csr_matrix,
            validation: Callable[[MultVAE], float] | None = None,
            items_from: sp.csr_matrix | None = None) -> MultVAE:
        """Train on a users x items matrix (rows of users without any entry are skipped).

        Parameters
        ----------
        matrix
            The users' rows (implicit pattern, optionally weighted).
        validation
            Called after each epoch with this model (scoring with the current weights); its
            value (higher is better, e.g. NDCG@10 on a validation part) chooses the epoch.
            Without it, exactly ``epochs`` epochs are trained.
        items_from
            The matrix whose rated items are modelled, when not ``matrix``: all training
            ratings for a model trained on a part, so that an item rated only outside that
            part is still scored (low), not left out of every list.
        """
        from .ease import modelled_items

        self._validate()
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if items_from is not None and items_from.shape[1] != matrix.shape[1]:
            raise ValueError("items_from must have the matrix's columns")
        self.n_items_ = int(matrix.shape[1])
        self.items_ = modelled_items(matrix if items_from is None else items_from,
                                     self.max_items)
        sub = matrix[:, self.items_].tocsr()
        users = np.flatnonzero(np.diff(sub.indptr) > 0)
        generator = torch.Generator().manual_seed(
            int(self.random_state) if self.random_state is not None else
            int(np.random.SeedSequence().generate_state(1)[0]))
        net = MultVAENet(len(self.items_), self.hidden, self.latent, self.variational)
        net.reset_parameters(generator)
        self.net_ = net
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr,
                                     weight_decay=self.weight_decay)
        self.history_: list[dict[str, Any]] = []
        best_score, best_state, since = -math.inf, None, 0
        self.best_epoch_ = self.epochs
        step = 0
        for epoch in range(1, self.epochs + 1):
            started = time.perf_counter()
            net.train()
            order = users[torch.randperm(len(users), generator=generator).numpy()]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = torch.from_numpy(sub[order[start:start + self.batch_size]].toarray())
                beta = min(self.beta_max, step / self.anneal_steps) if self.variational else 0.0
                loss = self._loss(net, batch, beta, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                total += float(loss.detach()) * len(batch)
            entry: dict[str, Any] = {"epoch": epoch, "loss": total / max(len(users), 1),
                                     "seconds": time.perf_counter() - started}
            if validation is not None:
                net.eval()
                score = float(validation(self))
                entry["validation_ndcg"] = score
                if score > best_score:
                    best_score, since, self.best_epoch_ = score, 0, epoch
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    since += 1
            self.history_.append(entry)
            log.debug("Mult-VAE epoch %d: %s", epoch, entry)
            if validation is not None and since >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        else:  # no validation score (none, or NaN throughout): the last epoch's weights
            self.best_epoch_ = len(self.history_)
        net.eval()
        return self

    def _loss(self, net: MultVAENet, batch: torch.Tensor, beta: float,
              generator: torch.Generator) -> torch.Tensor:
        x = F.normalize(batch, dim=1)
        if self.dropout > 0:
            keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= self.dropout
            x = x * keep / (1.0 - self.dropout)
        mu, logvar = net.encode(x)
        if logvar is not None:
            std = torch.exp(0.5 * logvar)
            z = mu + std * torch.randn(std.shape, generator=generator, dtype=std.dtype)
        else:
            z = mu
        log_probs = torch.log_softmax(net.decode(z), dim=1)
        loss = -(log_probs * batch).sum(dim=1).mean()
        if logvar is not None and beta > 0:
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
            loss = loss + beta * kl
        return loss

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("MultVAE is not fitted yet: call fit first")

    def score(self, rows: sp.csr_matrix) -> np.ndarray:
        """Logits of a batch of users' rows (``n x n_items`` float32; items not modelled get
        ``-inf``). Folding in a new user is scoring its row: its code is the encoder's mean
        for that row."""
        self._check_fitted()
        rows = sp.csr_matrix(rows)
        if rows.shape[1] != self.n_items_:
            raise ValueError(f"rows must have {self.n_items_} columns, got {rows.shape[1]}")
        out = np.full((rows.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        with torch.no_grad():
            x = torch.from_numpy(rows[:, self.items_].toarray().astype(np.float32))
            mu, _ = self.net_.encode(F.normalize(x, dim=1))
            out[:, self.items_] = self.net_.decode(mu).numpy()
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (for safetensors): the network's weights as
        ``net.<name>``, ``items``, ``n_items``, ``best_epoch``."""
        self._check_fitted()
        arrays = {f"net.{name}": value.detach().cpu().numpy()
                  for name, value in self.net_.state_dict().items()}
        arrays["items"] = self.items_
        arrays["n_items"] = np.asarray([self.n_items_], dtype=np.int64)
        arrays["best_epoch"] = np.asarray([self.best_epoch_], dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> MultVAE:
        """Rebuild from :meth:`to_arrays` and :attr:`params`."""
        model = cls(**params)
        model._validate()
        model.items_ = np.asarray(arrays["items"], dtype=np.int64)
        model.n_items_ = int(np.asarray(arrays["n_items"])[0])
        model.best_epoch_ = int(np.asarray(arrays["best_epoch"])[0])
        net = MultVAENet(len(model.items_), model.hidden, model.latent, model.variational)
        state = {name[len("net."):]: torch.from_numpy(np.array(value))
                 for name, value in arrays.items() if name.startswith("net.")}
        net.load_state_dict(state)  # refuses missing or unexpected weights
        net.eval()
        model.net_ = net
        model.history_ = []
        return model
