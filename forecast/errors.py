"""Exceptions raised by forecast.

Every message names what is wrong (the file, the column or the row) and how to fix it,
so a user can act on it without reading a traceback.
"""

import sys
from contextlib import contextmanager


class ForecastError(Exception):
    """Base class of every error raised on purpose by forecast."""

    label = "error"   # how an entry point prints it: "<label>: <message>"
    exit_code = 1     # and the exit status it stops with


class DataError(ForecastError, ValueError):
    """The input data (a file, a column, a row) cannot be used as given."""


class ConfigError(ForecastError, ValueError):
    """A configuration value is inconsistent with the data or with another value."""


@contextmanager
def exit_on_error():
    """For the entry points: a :class:`ForecastError` in the block ends the program with its
    message on stderr (no traceback) and its exit status. Other exceptions pass unchanged."""
    try:
        yield
    except ForecastError as error:
        print(f"{error.label}: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
