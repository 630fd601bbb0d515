"""Drift: the line through the first and last look-back values, extended (:class:`Drift`)."""

from __future__ import annotations

import torch

from forecast.models.classical import kernels
from forecast.models.classical.base import Classical

class Drift(Classical):
    """The line through the first and last values of the look-back, extended (random walk with
    drift): ``ŷ[L+h] = x[L−1] + h·(x[L−1] − x[0])/(L−1)``. Fully vectorised."""

    needs_period = False

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None):
        super().__init__(seq_len, pred_len, periods)

    def _forecast(self, series, channels):
        return kernels.drift(series, self.pred_len), torch.zeros(len(series), dtype=torch.bool)
