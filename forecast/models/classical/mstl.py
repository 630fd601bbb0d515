"""MSTL: STL with several seasonal periods (:class:`MSTL`)."""

from __future__ import annotations

from forecast.errors import ConfigError
from forecast.models.classical.base import Estimated
from forecast.models.classical.stl import STL

class MSTL(STL):
    """STL with several seasonal periods (``statsmodels.tsa.seasonal.MSTL``: e.g. 24 and 168
    for hourly data, every default period that fits more than twice in the look-back), a model of the
    adjusted series (``ETSModel`` or ``ARIMA``), and each seasonal component's last cycle added
    back: ``STLForecast`` generalised to several seasons. ``windows``: the seasonal smoother of
    each period (null: MSTL's default 7 + 4·i)."""

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, model: str = "ets",
                 trend: str | None = "add", damped: bool = True, order: list = (1, 1, 1), windows: list | None = None,
                 robust: bool = False, refit: str = "window", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        self._init_adjusted(model, trend, damped, order, robust)
        self.windows = [int(w) for w in windows] if windows else None
        if self.windows and any(w < 3 or w % 2 == 0 for w in self.windows):
            raise ConfigError(f"model.windows={windows}: each seasonal smoother must be an odd integer of at least 3.")
        self.seasonal_smoother = 7
        Estimated.__init__(self, seq_len, pred_len, periods, refit, train_rows, workers, progress)
        if self.windows and self.periods and len(self.windows) != len(self.periods):
            raise ConfigError(f"model.windows={windows} needs one smoother per period of model.periods={self.periods}.")

    def min_length(self, period: int) -> int:
        return 2 * period + 1  # statsmodels' MSTL drops a period that is not below half the series

    def _used_periods(self) -> list[int]:
        return list(self.periods)

    def _smoother(self):
        return self.windows
