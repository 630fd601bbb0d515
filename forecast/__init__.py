"""forecast: long-horizon time-series forecasting on one data layer, Lightning, Hydra and MLflow."""

__version__ = "0.1.0"
