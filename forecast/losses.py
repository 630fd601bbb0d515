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
