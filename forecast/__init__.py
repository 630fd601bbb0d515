"""forecast: long-horizon time-series forecasting on one data layer, Lightning, Hydra and MLflow.

``forecast.train``, ``forecast.backtest`` and ``forecast.predict`` (:mod:`forecast.api`) run the
command-line programs from Python with the same override syntax; they are imported on first use,
so ``import forecast`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["backtest", "predict", "train"]


def __getattr__(name: str):
    if name in __all__:
        from forecast import api

        return getattr(api, name)
    raise AttributeError(f"module 'forecast' has no attribute '{name}'")
