"""Auto-Correlation (Autoformer, Wu et al. 2021): period-based dependencies found with the FFT,
values aggregated by rolling whole sub-series by the strongest delays.

For queries ``Q [B, L, d]`` and keys ``K [B, S, d]`` (right-padded with zeros to ``L`` or cut to
``L``), the circular cross-correlation of every feature is ``R(τ) = IFFT(FFT(Q)·conj(FFT(K)))(τ)``
(Wiener-Khinchin). The reference code averages it over heads and features into one curve per
sample, ``R̄ [B, L]``, picks ``k = ⌊factor·ln L⌋`` delays on it, and returns
``Σ_i softmax(R̄(τ_i))·Roll(V, τ_i)`` (keys and values shorter than the queries are
zero-padded, longer ones cut, as in the reference). Because the delays and weights are shared by every head
and feature, the head split changes nothing, so this module works on the whole ``d``
features at once; and because only the average over features is used, it is computed directly
as the circular diagonal sums of one matrix product ``Q·Kᵀ`` (:func:`mean_correlation`), which
on the CPU is faster than the FFTs at these lengths; :class:`AutoCorrelationLayer` forms that product
without projecting the keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forecast.layers.precision import full_precision


def circular_diagonal_sums(products: torch.Tensor, length: int) -> torch.Tensor:
    """``out[b, τ] = Σ_t products[b, t, (t - τ) mod L]`` over the columns there are.

    ``products [B, L, S]`` with ``S <= L`` (missing columns count as zeros) -> ``[B, L]``: one
    ``scatter_add`` of every entry to its delay.
    """
    batch, source = products.shape[0], products.shape[2]
    steps = torch.arange(length, device=products.device)
    lag = (steps[:, None] - steps[None, :source]) % length  # τ of each (t, s)
    return products.new_zeros(batch, length).scatter_add_(1, lag.flatten().expand(batch, -1), products.flatten(1))


def mean_correlation(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``R̄(τ) = mean_d Σ_t q[t, d]·k[(t - τ) mod L, d]`` for ``τ = 0..L-1``.

    ``queries [B, L, d]``, ``keys [B, S, d]`` (zero-padded or cut to ``L``) -> ``[B, L]``.
    The paper computes this through the FFT (``IFFT(FFT(Q)·conj(FFT(K)))``); here it is the sum of
    the circular diagonals of ``G = Q·Kᵀ`` (``[B, L, S]``, one batched matrix product): the same
    numbers up to float rounding (about 1e-6 relative), and on the CPU 2-4x faster forward and
    backward at L = 96-768, d = 512 (FFTs along time need transposed copies of
    ``[B, L, d]`` each way). Computed in float32 whatever the input precision: the delays are
    picked on this curve.
    """
    length = queries.shape[1]
    with full_precision(queries):  # also under bf16 autocast
        products = torch.bmm(queries.float(), keys[:, :length].float().transpose(1, 2))  # [B, L, S]
        return circular_diagonal_sums(products, length) / queries.shape[-1]


def time_delay_aggregation(values: torch.Tensor, delays: torch.Tensor, weights: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """``out[b, t] = Σ_i weights[b, i]·values[b, (t + delays[i]) mod L]``, ``t < L``.

    ``values [B, S, d]`` with ``S <= L`` (missing steps count as zeros; ``L = length``,
    default ``S``); ``delays [k]`` (shared by the batch) or ``[B, k]`` (per sample);
    ``weights [B, k]``. The rolls are summed as one batched product with the sparse
    ``[B, L, S]`` matrix holding each weight at its rolled position: no loop over the batch
    or the delays, and the same cost for shared and per-sample delays (fwd+bwd 4x faster
    than summing k rolled copies on ``[32, 144, 512]``, and far faster than gathering
    per-sample rolls).
    """
    batch, source = values.shape[0], values.shape[1]
    length = source if length is None else length
    if source > length:
        raise ValueError(f"values have {source} steps, more than the output length {length}")
    delays = delays.expand(batch, -1) if delays.dim() == 1 else delays
    steps = torch.arange(length, device=values.device)
    index = (steps[None, :, None] + delays[:, None, :]) % length  # [B, L, k]: rolled positions
    mixing = weights.new_zeros(batch, length, length).scatter_add_(2, index, weights[:, None, :].expand(-1, length, -1))
    return torch.bmm(mixing[:, :, :source].to(values.dtype), values)


class AutoCorrelation(nn.Module):
    """Delay selection and time-delay aggregation. ``(Q [B,L,d], K [B,S,d], V [B,S,d]) -> [B,L,d]``.

    The delay rule depends on ``self.training``, as in the official code:

    * training: the top-k delays of ``R̄`` averaged over the batch, shared by every sample
      (the paper's "speed-up" path); each sample weights them by its own ``R̄`` values.
    * evaluation (validation, test, prediction): the top-k delays of each sample's own ``R̄``.

    The weights are a softmax over the selected correlations, so gradients reach the
    queries and keys through them.
    """

    def __init__(self, factor: float = 1.0):
        super().__init__()
        self.factor = factor

    def top_k(self, length: int) -> int:
        return max(1, min(length, int(self.factor * math.log(length))))

    def select_delays(self, corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``R̄ [B, L]`` -> (delays ``[k]`` in training, ``[B, k]`` otherwise; weights ``[B, k]``)."""
        k = self.top_k(corr.shape[1])
        if self.training:
            delays = corr.mean(dim=0).topk(k).indices
            weights = corr[:, delays]
        else:
            weights, delays = corr.topk(k, dim=-1)
        return delays, torch.softmax(weights, dim=-1)

    def aggregate(self, corr: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The delays and weights picked on ``R̄ [B, L]``, applied to ``values [B, S, d]`` -> ``[B, L, d]``."""
        length = corr.shape[1]
        delays, weights = self.select_delays(corr)
        return time_delay_aggregation(values[:, :length], delays, weights, length)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.aggregate(mean_correlation(queries, keys), values)


class AutoCorrelationLayer(nn.Module):
    """Projections around :class:`AutoCorrelation`: ``Q, K, V = Linear_d->d``, then ``Linear_d->d``.

    ``n_heads`` is kept for the reference configuration's sake and checked to divide
    ``d_model``; it does not change the result (see the module docstring).

    The queries and keys are used only through ``G = Q·Kᵀ``, so the keys are never projected:
    with ``Q = X·Wqᵀ + bq`` and ``K = Y·Wkᵀ + bk``,
    ``G = (X·(Wkᵀ·Wq)ᵀ + Wkᵀ·bq)·Yᵀ + (X·Wqᵀ·bk + bq·bk)·1ᵀ``: one ``d -> d + 1`` projection of the
    queries' input and a product with the keys' raw input. The same function and the same
    parameters (a checkpoint of either form loads in the other), a quarter fewer projection
    FLOPs (Autoformer's training step: about 8 % fewer FLOPs in all), for one ``d x d`` product of
    the weights per call. The value projection runs in the same matrix product as the queries'
    when they share their input (self-correlation).
    """

    def __init__(self, d_model: int, n_heads: int = 8, factor: float = 1.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.correlation = AutoCorrelation(factor)
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _query_key(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``[d + 1, d]`` and bias ``[d + 1]`` of ``X -> (Q·Wk, Q·bk)``."""
        wq, bq, wk, bk = self.query.weight, self.query.bias, self.key.weight, self.key.bias
        weight = torch.cat([wk.t() @ wq, (bk @ wq)[None]])
        bias = torch.cat([wk.t() @ bq, (bq @ bk)[None]])
        return weight, bias

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        length, width = queries.shape[1], queries.shape[2]
        with full_precision(queries):  # under bf16 autocast, folded in float32 and rounded once: folded
            weight, bias = self._query_key()  # in bf16, a small network's output moved 10 %, not 0.6 %
        if queries is values:
            both = F.linear(queries, torch.cat([weight, self.value.weight]), torch.cat([bias, self.value.bias]))
            projected, v = both[..., : width + 1], both[..., width + 1 :]
        else:
            projected, v = F.linear(queries, weight, bias), self.value(values)
        with full_precision(queries):  # the delays are picked in float32, also under bf16 autocast
            projected = projected.float()
            products = torch.baddbmm(projected[..., width:], projected[..., :width], keys[:, :length].float().transpose(1, 2))
            corr = circular_diagonal_sums(products, length) / width
        return self.out(self.correlation.aggregate(corr, v))
