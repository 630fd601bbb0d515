"""D-PAD (Yuan & Chen, 2024): deep-shallow multi-frequency pattern disentangling.

Each channel's normalised window is split into ``k`` frequency components by the parameter-free
morphological decomposition (MCD, the shallow part, :mod:`forecast.layers.morphology`); a binary
tree (D-R-D, the deep part) softly regroups the components of every internal node into two
series, transforms each with an MLP and decomposes it again; the leaves' ``2^(levels-1)·k``
components are forecast one by one and fused. Specification and the official code's
conventions: ``reference/models.md`` §4.

The nodes of one tree depth are computed together (stacked on a node axis, their weights
batched), so the cost does not grow with a Python loop over nodes or components.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forecast.errors import ConfigError
from forecast.layers.dropout import Dropout
from forecast.layers.morphology import MorphologicalDecomposition
from forecast.layers.normalization import RevIN
from forecast.models.base import Network, positive


class GroupLinear(nn.Module):
    """``groups`` independent ``Linear(in, out)`` maps, one per index of the leading group
    axis: ``x [G, ..., in] -> [G, ..., out]`` (``nn.Linear``'s initialisation)."""

    def __init__(self, groups: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # a view when x is group-major and contiguous
        out = torch.baddbmm(self.bias.unsqueeze(1), flat, self.weight) if self.bias is not None else flat @ self.weight
        return out.view(*x.shape[:-1], -1)


class GroupBatchNorm(nn.BatchNorm1d):
    """``BatchNorm`` without affine parameters for group-major ``x [G, B, N, ...]``: separate
    statistics for every (group, channel) pair, pooled over the batch and the trailing dims
    (the official per-node ``BatchNorm1d(N)`` / ``BatchNorm2d(N)`` of all nodes of a depth at
    once). Running statistics as ``nn.BatchNorm1d(G·N)`` keeps them (momentum 0.1, unbiased
    variance), computed in place so the layout needs no copy."""

    def __init__(self, groups: int, channels: int):
        super().__init__(groups * channels, affine=False)
        self.groups, self.channels = groups, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.groups, 1, self.channels) + (1,) * (x.dim() - 3)
        if self.training:
            dims = (1, *range(3, x.dim()))
            var, mean = torch.var_mean(x, dim=dims, keepdim=True, unbiased=False)
            count = x.numel() // self.num_features
            with torch.no_grad():
                self.num_batches_tracked += 1
                self.running_mean.lerp_(mean.flatten(), self.momentum)
                self.running_var.lerp_(var.flatten() * (count / max(count - 1, 1)), self.momentum)
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        return (x - mean) * torch.rsqrt(var + self.eps)


class Reconstruction(nn.Module):
    """The internal nodes of one depth: soft branch selection of each node's ``K`` components
    into two mixtures, then one MLP per child. ``components [G, B, N, K, T] -> [2G, B, N, T]``
    (children of node ``g`` at ``2g`` (left) and ``2g + 1`` (right)).

    The selection is ``softmax(Linear(LeakyReLU(BN(Linear_{T→64}(c)))))`` over two branches
    (the official "Gumbel" softmax with ``hard=False`` is this plain softmax). ``mask=True``
    adds the official GCN variant's component mask (a ``Conv2d(1→K, (K, 3))`` over the
    components, multiplied in before mixing).
    """

    def __init__(self, nodes: int, channels: int, k: int, seq_len: int, hidden: int, dropout: float, mask: bool):
        super().__init__()
        children = 2 * nodes
        self.select_in = GroupLinear(nodes, seq_len, 64)
        self.select_norm = GroupBatchNorm(nodes, channels)
        self.select_out = GroupLinear(nodes, 64, 2)
        self.mask = nn.Conv2d(nodes, nodes * k, (k, 3), padding=(0, 1), groups=nodes) if mask else None
        self.up = GroupLinear(children, seq_len, hidden)
        self.up_norm = GroupBatchNorm(children, channels)
        self.dropout = Dropout(dropout)
        self.down = GroupLinear(children, hidden, seq_len)
        self.down_norm = GroupBatchNorm(children, channels)

    def forward(self, components: torch.Tensor) -> torch.Tensor:
        nodes, batch, channels, k, length = components.shape
        logits = self.select_out(F.leaky_relu(self.select_norm(self.select_in(components))))
        weights = logits.softmax(-1)  # [G, B, N, K, 2]
        if self.mask is not None:
            series = components.permute(1, 2, 0, 3, 4).reshape(batch * channels, nodes, k, length)
            mask = self.mask(series).view(batch, channels, nodes, k, length).permute(2, 0, 1, 3, 4)
            components = components * mask
        mixed = weights.transpose(-1, -2) @ components  # [G, B, N, 2, T]
        mixed = mixed.permute(0, 3, 1, 2, 4).reshape(2 * nodes, batch, channels, length)
        hidden = self.dropout(F.leaky_relu(self.up_norm(self.up(mixed))))
        return F.leaky_relu(self.down_norm(self.down(hidden)))


class SqueezeExcitationFusion(nn.Module):
    """The official ``DPAD_SE`` head: weights ``σ(W2 ReLU(W1 mean_t(y)))`` over the ``M``
    component forecasts (``W`` ∈ R^{M×M}, no bias), weighted sum, ``Linear_{T→H}``."""

    def __init__(self, m: int, seq_len: int, pred_len: int):
        super().__init__()
        self.squeeze = nn.Linear(m, m, bias=False)
        self.excite = nn.Linear(m, m, bias=False)
        self.project = nn.Linear(seq_len, pred_len)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # [M, B, N, T] -> [B, N, H]
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(y.mean(-1).permute(1, 2, 0)))))  # [B, N, M]
        return self.project((y * weights.permute(2, 0, 1).unsqueeze(-1)).sum(0))


class GraphFusion(nn.Module):
    """The paper's interaction between components (the official ``DPAD_GCN`` head): an
    adjacency ``A = ReLU(E1(y) E2(y)^T)`` between the ``M`` component forecasts of each series
    (``E1, E2: Linear_{T→hidden}``), ``y ← LeakyReLU(Linear_{T→T}(A y))``, sum, ``Linear_{T→H}``."""

    def __init__(self, seq_len: int, pred_len: int, hidden: int):
        super().__init__()
        self.embed1 = nn.Linear(seq_len, hidden)
        self.embed2 = nn.Linear(seq_len, hidden)
        self.mix = nn.Linear(seq_len, seq_len)
        self.project = nn.Linear(seq_len, pred_len)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # [M, B, N, T] -> [B, N, H]
        y = y.permute(1, 2, 0, 3)  # [B, N, M, T]
        adjacency = F.relu(self.embed1(y) @ self.embed2(y).transpose(-1, -2))
        return self.project(F.leaky_relu(self.mix(adjacency @ y)).sum(2))


class DPAD(Network):
    """``forward(x [B, L, C]) -> [B, H, C]`` (calendar features are not used).

    Channel-independent: every weight is shared by the channels; only the batch norms keep
    per-channel statistics. With ``revin`` the window is normalised per sample and channel
    (:class:`forecast.layers.normalization.RevIN`) and the forecast mapped back.

    ``k`` components per MCD call, ``levels`` tree depths (``levels = 1``: one MCD and the
    forecast; 2: the official setting, 12 components), MLP width ``hidden``. ``fusion``: ``se``
    (squeeze-excitation, the official scripts) or ``gcn`` (graph interaction between
    components, as the paper describes; also adds the GCN variant's component mask).
    ``sift_*`` and ``multiscale`` configure the MCD (:class:`MorphologicalDecomposition`).

    Official configuration (ETTh1: L 336, H 96, k 6, levels 2, hidden 336, SE): 3,224,848
    trainable parameters; the official count, 3,224,866, adds the 18 frozen zeros of its three
    MCD blocks' flat structuring elements, which are constants here.
    """

    uses_time_features = False
    channel_independent = True
    small_config = {"k": 3, "hidden": 16, "dec_hidden": 8}

    def __init__(self, seq_len: int, pred_len: int, enc_in: int, k: int = 6, levels: int = 2, hidden: int = 336,
                 dec_hidden: int = 336, dropout: float = 0.5, fusion: str = "se", revin: bool = True,
                 sift_threshold: float = 0.1, sift_max_iterations: int = 10, multiscale: bool = False):
        super().__init__()
        positive("DPAD", seq_len=seq_len, pred_len=pred_len, enc_in=enc_in, hidden=hidden, dec_hidden=dec_hidden)
        if fusion not in ("se", "gcn"):
            raise ConfigError(f"DPAD: fusion must be 'se' or 'gcn', got {fusion!r}. Fix: model.fusion=se (the official "
                              "scripts) or gcn (the paper's component interaction).")
        if levels < 1:
            raise ConfigError(f"DPAD: levels must be >= 1, got {levels}. Fix: model.levels=2 (the official depth).")
        if k < 2:
            raise ConfigError(f"DPAD: k (components per decomposition) must be >= 2, got {k}. Fix: model.k=6 (official).")
        if sift_threshold <= 0 or sift_max_iterations < 1:
            raise ConfigError(f"DPAD: sift_threshold={sift_threshold} must be > 0 and sift_max_iterations="
                              f"{sift_max_iterations} >= 1. Fix: the defaults are 0.1 and 10.")
        self.seq_len, self.pred_len, self.enc_in, self.k, self.levels = seq_len, pred_len, enc_in, k, levels
        self.revin = RevIN(enc_in) if revin else None
        self.decompose = MorphologicalDecomposition(k, sift_threshold, sift_max_iterations, multiscale=multiscale)
        self.reconstruct = nn.ModuleList(
            Reconstruction(2**depth, enc_in, k, seq_len, hidden, dropout, mask=fusion == "gcn") for depth in range(levels - 1)
        )
        m = 2 ** (levels - 1) * k
        self.forecast_in = GroupLinear(m, seq_len, hidden)
        self.forecast_out = GroupLinear(m, hidden, seq_len)
        self.fusion = SqueezeExcitationFusion(m, seq_len, pred_len) if fusion == "se" else GraphFusion(seq_len, pred_len, dec_hidden)
        self.sift_iterations: list[torch.Tensor] = []

    def iteration_counts(self) -> list[torch.Tensor]:
        """Sifting steps of the last forward, one ``[B·N, K-1]`` tensor per tree depth."""
        return list(self.sift_iterations)

    def components(self, x: torch.Tensor) -> torch.Tensor:
        """The leaves' components of the normalised input ``x [B, L, C]``: ``[M, B, C, L]``,
        ordered node by node (left subtree first), each node's ``k`` components high to low.
        Tensors inside the tree are group-major (node or component first), so the batched
        weights of a depth apply without copies."""
        series = x.transpose(1, 2).unsqueeze(0)  # [1 node, B, N, T]
        self.sift_iterations = []
        for reconstruct in self.reconstruct:
            parts = self.decompose(series)  # [G, B, N, K, T]
            self.sift_iterations.append(self.decompose.last_iterations)
            series = reconstruct(parts)
        parts = self.decompose(series)
        self.sift_iterations.append(self.decompose.last_iterations)
        nodes, batch, channels, k, length = parts.shape
        return parts.permute(0, 3, 1, 2, 4).reshape(nodes * k, batch, channels, length)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1] != self.seq_len:
            raise ValueError(f"D-PAD was built for windows of {self.seq_len} steps, got {x.shape[1]}")
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        parts = self.components(x)
        forecasts = self.forecast_out(F.leaky_relu(self.forecast_in(parts)))
        out = self.fusion(forecasts).transpose(1, 2)  # [B, H, N]
        return self.revin.denormalize(out, stats) if self.revin is not None else out
