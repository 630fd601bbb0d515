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


@contextmanager
def config_errors():
    """For a Hydra entry point, around its ``main()``: a configuration mistake ends as a
    :class:`ConfigError` (one ``error: … Fix: …`` line, a misspelt key with the closest valid
    ones) instead of Hydra's wrapped message and its ``HYDRA_FULL_ERROR`` hint. Hydra re-raises
    its errors when ``HYDRA_FULL_ERROR`` is set, which is how they reach this block; anything
    else (a bug) keeps its traceback."""
    import os

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (HydraException, OmegaConfBaseException) as error:
        raise config_error(error) from None



def config_error(error: Exception) -> ForecastError:
    """The :class:`ConfigError` for a Hydra/OmegaConf error (or the network's own error inside it)."""
    import dataclasses
    import re

    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = error.__cause__
    if isinstance(cause, ForecastError):  # a network's or the data module's own check
        return cause
    if isinstance(error, MissingConfigException) and error.options:  # model=karmaa
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        return ConfigError(f"{group}={option}: no such option.{_suggest(option, list(error.options), group + '=')} "
                           f"Fix: choose one of {', '.join(error.options)}.")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:  # not a key of the schema
        schema = cause.object_type
        valid = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
        return ConfigError(f"{cause.full_key}: no such setting.{_suggest(cause.full_key, valid)} Fix: correct the key "
                           "(`--cfg job` at the end of the command prints every setting).")
    if isinstance(cause, ValidationError) and cause.full_key:  # data.seq_len=abc
        return ConfigError(f"{cause.full_key}: {str(cause).splitlines()[0]}. Fix: give a value of the setting's type.")
    target = re.search(r"target '([\w.]+)'", str(error))
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
    if target and unexpected:  # a key added with '+' that the object does not take
        key = f"{_node(target.group(1))}.{unexpected.group(1)}"
        return ConfigError(f"{key}: no such setting of {target.group(1)}.{_suggest(key, _parameters(target.group(1)))} "
                           "Fix: correct the key (a leading + adds a key to the config; the code still does not take it).")
    if target and cause is not None:  # the object refused its settings
        return ConfigError(f"{_node(target.group(1))} ({target.group(1)}): {cause}. Fix: change the setting it names.")
    return ConfigError(str(error).strip().split("\nConfig search path")[0])


def _node(target: str) -> str:
    """The config node an instantiated class comes from (``model`` for a network)."""
    return "model" if target.startswith("forecast.models.") else "data" if target.startswith("forecast.data.") else "trainer"


def _parameters(target: str) -> list[str]:
    import importlib
    import inspect

    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return []
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]


def _suggest(full_key: str, valid: list[str], prefix: str | None = None) -> str:
    """``" Did you mean model.d_model?"``; for a model key that no close setting of this network
    matches, the networks that have the closest one; "" when nothing is close."""
    import difflib

    if prefix is None:
        head, _, key = full_key.rpartition(".")
        prefix = f"{head}." if head else ""
    else:
        head, key = prefix.rstrip("=."), full_key
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if close:
        return " Did you mean " + " or ".join(prefix + c for c in close) + "?"
    if head == "model":
        from forecast.config import network_classes

        scored: dict[str, list[str]] = {}
        for name, cls in network_classes().items():
            for other in _parameters(f"{cls.__module__}.{cls.__qualname__}"):
                scored.setdefault(other, []).append(f"model={name}")
        ratio = {k: difflib.SequenceMatcher(None, key, k).ratio() for k in scored}
        best = max(ratio.values(), default=0)
        if best >= 0.75:
            return "".join(f" model.{k} is a setting of {', '.join(v)}." for k, v in scored.items() if ratio[k] == best)
    return ""
