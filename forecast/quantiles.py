"""Quantile training (``module.loss=quantile``) for every deep network, without touching any.

* :func:`trained_grid`: the quantiles a run trains (``module.quantiles``, or by default the
  wQL grid 0.1 … 0.9 and the ``α/2``, ``1 − α/2`` of each ``intervals.levels``); ``None`` for a
  run with another loss;
* :class:`QuantileNetwork`: any network's point forecast ``ŷ [B, H, C]`` as the median and the
  other quantiles ``ŷ ∓ cumsum(softplus(offsets))`` outward from it, the offsets from a small
  linear head on each channel's input window. The quantiles are **non-crossing by
  construction** (each offset is positive, so every quantile lies at or beyond its inner
  neighbour), not sorted after the fact or penalised;
* :func:`wrap`: the network a run trains and serves (wrapped when the run trains quantiles);
  the training pipeline and the served model call it alike, so the logged weights load back.

The network keeps the contract (``forward`` returns the median, so val/test metrics, plots and
every caller of ``forward`` see the point forecast); :meth:`QuantileNetwork.quantiles` returns
``[B, H, C, Q]``, which :class:`forecast.losses.PinballLoss` trains and conformalised quantile
regression (``intervals.method=cqr``, :class:`forecast.intervals.QuantileCalibration`) calibrates.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from forecast.errors import ConfigError
from forecast.losses import PinballLoss
from forecast.models.base import Network

LOSS = "quantile"  # module.loss=quantile


def level_quantiles(levels) -> list[float]:
    """The median and the ``α/2``, ``1 − α/2`` of each level (percent), ascending."""
    taus = {0.5}
    for level in levels:
        alpha = 1 - int(level) / 100
        taus |= {round(alpha / 2, 6), round(1 - alpha / 2, 6)}
    return sorted(taus)


def check_grid(quantiles, key: str = "module.quantiles") -> list[float]:
    """The quantile grid ascending with the median in it; ``ConfigError`` otherwise."""
    try:
        taus = sorted({round(float(t), 6) for t in quantiles})
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={quantiles!r} is not a list of numbers. Fix: e.g. {key}=[0.1,0.5,0.9].") from None
    if not taus or any(not 0 < t < 1 for t in taus):
        raise ConfigError(f"{key}={list(quantiles)}: every quantile must lie strictly between 0 and 1. "
                          f"Fix: e.g. {key}=[0.1,0.5,0.9].")
    if 0.5 not in taus:
        raise ConfigError(f"{key}={list(quantiles)} has no median (0.5), the point forecast every metric scores. "
                          f"Fix: add 0.5, e.g. {key}=[0.1,0.5,0.9].")
    return taus


def trained_grid(cfg: DictConfig) -> list[float] | None:
    """The quantiles a run with ``module.loss=quantile`` trains (``module.quantiles``; by default
    the wQL grid 0.1, 0.2, …, 0.9 that every method's ``test/wql`` is scored on, and the ``α/2``,
    ``1 − α/2`` of each of ``intervals.levels``: 0.025 and 0.975 more for 80 and 95); ``None`` for
    any other loss."""
    module = cfg.get("module") or {}
    if module.get("loss") != LOSS:
        return None
    given = module.get("quantiles")
    if given is not None:
        return check_grid(OmegaConf.to_object(given) if OmegaConf.is_config(given) else given)
    from forecast import intervals

    levels = intervals.check_levels(OmegaConf.select(cfg, "intervals.levels", default=None)) \
        if OmegaConf.select(cfg, "intervals.method", default=None) else []
    return sorted(set(level_quantiles(levels)) | set(intervals.WQL_QUANTILES))


class QuantileNetwork(Network):
    """A network's point forecast as the median and the other quantiles around it.

    ``quantiles(x, x_mark, y_mark) -> [B, H, C, Q]`` (ascending along Q): the wrapped network's
    ``ŷ [B, H, C]`` at the median, and below/above it ``ŷ ∓ cumsum(softplus(d))`` outward,
    ``d [B, H, C, Q − 1]`` from one linear map (shared by the channels) of each channel's input
    window, centred, and its absolute value (so the width can follow the window's volatility).
    ``forward`` returns the median, so the network contract holds."""

    uses_time_features = False  # class-level declarations for the contract check; the instance
    channel_independent = False  # takes the wrapped network's (see __init__)

    def __init__(self, network: Network, quantiles, seq_len: int, pred_len: int):
        super().__init__()
        self.network = network
        self.quantiles_grid = check_grid(quantiles)
        self.median = self.quantiles_grid.index(0.5)
        self.seq_len, self.pred_len = int(seq_len), int(pred_len)
        self.uses_time_features = bool(network.uses_time_features)
        self.channel_independent = bool(network.channel_independent)
        n_offsets = len(self.quantiles_grid) - 1
        self.head = nn.Linear(2 * self.seq_len, self.pred_len * n_offsets) if n_offsets else None

    def quantiles(self, x: torch.Tensor, x_mark: torch.Tensor | None = None,
                  y_mark: torch.Tensor | None = None) -> torch.Tensor:
        point = self.network(x, x_mark, y_mark)  # [B, H, C]
        if self.head is None:
            return point.unsqueeze(-1)
        b, h, c = point.shape
        window = x[..., -c:].transpose(1, 2)  # [B, C, L]: the input channels the outputs forecast
        window = window - window.mean(dim=-1, keepdim=True)
        steps = F.softplus(self.head(torch.cat([window, window.abs()], dim=-1)))  # [B, C, H·(Q−1)]
        steps = steps.view(b, c, h, -1).permute(0, 2, 1, 3).to(point.dtype)  # [B, H, C, Q−1]
        below = steps[..., : self.median].flip(-1).cumsum(-1).flip(-1)  # farthest first
        above = steps[..., self.median:].cumsum(-1)
        p = point.unsqueeze(-1)
        return torch.cat([p - below, p, p + above], dim=-1)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None,
                y_mark: torch.Tensor | None = None) -> torch.Tensor:
        return self.network(x, x_mark, y_mark)

    # the wrapped network's hooks, with the head's parameters added where they are listed
    def fit_training(self, series, freq=None, scaler=None) -> None:
        self.network.fit_training(series, freq=freq, scaler=scaler)

    def diagnostics(self) -> dict[str, float]:
        return self.network.diagnostics()

    def training_decomposition(self, channels):
        return self.network.training_decomposition(channels)

    def param_groups(self):
        groups = self.network.param_groups()
        if groups is None or self.head is None:
            return groups
        return [*groups, {"params": list(self.head.parameters()), "name": "quantile_head"}]

    def iteration_counts(self):
        return self.network.iteration_counts()

    def parameters_without_gradient(self) -> set[str]:
        return {f"network.{name}" for name in self.network.parameters_without_gradient()}


def wrap(network: Network, cfg: DictConfig) -> Network:
    """``network`` as ``cfg`` trains it: a :class:`QuantileNetwork` when the run trains
    quantiles (``module.loss=quantile``), else unchanged. A network without trainable parameters
    (a classical baseline) has no point forecast to train: refused with the fix."""
    grid = trained_grid(cfg)
    if grid is None:
        return network
    if not any(p.requires_grad for p in network.parameters()):
        raise ConfigError(f"module.loss=quantile: {type(network).__name__} has no trainable parameters, so no quantile "
                          "can be trained. Fix: train a deep model (e.g. model=dlinear), or use "
                          "intervals.method=conformal_quantile for asymmetric bands around this one.")
    return QuantileNetwork(network, grid, cfg.data.seq_len, cfg.data.pred_len)


def build_loss(cfg: DictConfig) -> nn.Module | None:
    """The training loss of ``cfg.module.loss``: :class:`PinballLoss` over :func:`trained_grid`
    for ``quantile``, else the instantiated node (``None``: the module's default, MSE)."""
    grid = trained_grid(cfg)
    if grid is not None:
        return PinballLoss(grid)
    node = cfg.module.get("loss")
    if isinstance(node, str):
        raise ConfigError(f"module.loss={node!r}: the only named loss is '{LOSS}'. Fix: module.loss=quantile, or a node "
                          "with a _target_ (e.g. module.loss._target_=torch.nn.L1Loss).")
    if not node:
        return None
    from hydra.utils import instantiate

    return instantiate(node)


def unscale(scaler, quantiles: np.ndarray) -> np.ndarray:
    """Quantile forecasts ``[..., C, Q]`` on the z-scored scale in the data's units (the target
    scaler's ``inverse_transform`` applied to each quantile)."""
    moved = np.moveaxis(np.asarray(quantiles, dtype=np.float64), -1, 0)
    return np.moveaxis(scaler.inverse_transform(moved), 0, -1)


def check_intervals(settings: dict, cfg: DictConfig) -> None:
    """Refuse ``intervals.method=cqr`` (checked settings ``settings``) for a run that does not
    train quantiles, or at a level whose two quantiles are not in the trained grid."""
    if settings.get("method") != "cqr":
        return
    from forecast import intervals

    grid = trained_grid(cfg)
    if grid is None:
        raise ConfigError("intervals.method=cqr conformalises a quantile model's own bands, and this run trains point "
                          f"forecasts (module.loss={OmegaConf.select(cfg, 'module.loss._target_', default=None) or cfg.module.get('loss')}). "
                          "Fix: add module.loss=quantile, or use intervals.method=conformal_error (or conformal_quantile) "
                          "around the point forecast.")
    intervals.require_pairs(grid, settings["levels"])
