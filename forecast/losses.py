"""Training losses beyond torch's, usable by any model (``module.loss._target_``)."""

from __future__ import annotations

import torch
from torch import nn

from forecast.layers.precision import full_precision


class TimeFrequencyLoss(nn.Module):
    """``(1 - w) · MSE(ŷ, y) + w · mean |rFFT_t(ŷ) - rFFT_t(y)|``: the squared error in time plus
    the mean modulus of the complex difference of the real FFTs along the horizon (dim 1), as
    KARMA's official ``htfLoss`` (FreDF-style; ``w = 0.8`` there). ``w = 0`` is plain MSE."""

    def __init__(self, frequency_weight: float = 0.8):
        super().__init__()
        if not 0.0 <= frequency_weight <= 1.0:
            raise ValueError(f"frequency_weight must be in [0, 1], got {frequency_weight}")
        self.frequency_weight = frequency_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with full_precision(pred):  # fp32 under autocast too
            error = pred.float() - target.float()
            time_term = error.square().mean()
            if self.frequency_weight == 0:
                return time_term
            spectrum = torch.fft.rfft(error, dim=1)  # linear: rFFT(ŷ) - rFFT(y)
            return (1 - self.frequency_weight) * time_term + self.frequency_weight * spectrum.abs().mean()


class PinballLoss(nn.Module):
    """The mean multi-quantile pinball loss ``mean max(τ·(y − q_τ), (τ − 1)·(y − q_τ))`` over
    every quantile ``τ`` of ``quantiles`` (ascending, strictly inside (0, 1)), window, step and
    channel: ``pred [..., Q]`` holds one forecast per quantile, ``target [...]`` the truth.
    ``module.loss=quantile`` trains with it (see :mod:`forecast.quantiles`)."""

    def __init__(self, quantiles):
        super().__init__()
        taus = [float(t) for t in quantiles]
        if not taus or any(not 0 < t < 1 for t in taus) or taus != sorted(set(taus)):
            raise ValueError(f"quantiles must be ascending, distinct and strictly between 0 and 1, got {list(quantiles)}")
        self.quantiles = taus
        self.register_buffer("taus", torch.tensor(taus), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with full_precision(pred):
            diff = target.float().unsqueeze(-1) - pred.float()  # [..., Q]
            taus = self.taus.to(diff.device)
            return torch.maximum(taus * diff, (taus - 1) * diff).mean()
