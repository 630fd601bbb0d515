"""Per-channel z-score scaling fitted on the training rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast.errors import DataError


@dataclass(frozen=True)
class StandardScaler:
    """``(x - mean) / std`` per channel; ``std`` uses ddof=0 as scikit-learn's scaler does."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, columns: list[str], allow_constant: bool = False, source: str = "the series") -> "StandardScaler":
        """Fit on ``values`` ``[T, C]``.

        A channel that is constant over the training rows has no scale: it is an error, unless
        ``allow_constant`` is set, in which case its std is taken as 1 (the channel is only
        centred) rather than dividing by zero.
        """
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        constant = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        if constant.any():
            names = [columns[i] for i in np.flatnonzero(constant)]
            if not allow_constant:
                raise DataError(
                    f"{source}: channel(s) {names} are constant over the training rows, so they cannot "
                    "be standardised (their std is 0). Fix: drop them from the file, or set "
                    "data.allow_constant=true to only centre them."
                )
            std = np.where(constant, 1.0, std)
        return cls(mean=mean, std=std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """Back to the original scale; ``values [..., C]``."""
        return values * self.std + self.mean

    def select(self, channels: slice) -> "StandardScaler":
        """The scaler of a subset of channels (e.g. the target in MS mode)."""
        return StandardScaler(mean=self.mean[channels], std=self.std[channels])
