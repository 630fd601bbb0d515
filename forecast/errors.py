"""Exceptions raised by forecast.

Every message names what is wrong (the file, the column or the row) and how to fix it,
so a user can act on it without reading a traceback.
"""


class ForecastError(Exception):
    """Base class of every error raised on purpose by forecast."""


class DataError(ForecastError, ValueError):
    """The input data (a file, a column, a row) cannot be used as given."""


class ConfigError(ForecastError, ValueError):
    """A configuration value is inconsistent with the data or with another value."""
