"""The network contract: what every network of ``forecast.models`` is and may do.

A network is a plain ``nn.Module`` that subclasses :class:`Network`. The training system
(:mod:`forecast.pipelines.train`, :class:`forecast.module.ForecastModule`, the retrain and the
speed benchmark) calls only what is declared here; a network overrides the hooks it needs and
inherits the no-op default of the others, so no caller ever asks ``hasattr``.

Required of every network class (checked by :func:`check_network` when
:func:`forecast.config.network_classes` discovers it, so a missing part fails with the class
named instead of the network silently getting no config schema):

* ``forward(x [B, L, C], x_mark [B, L, M] | None = None, y_mark [B, H, M] | None = None)
  -> [B, H, C]`` on the z-scored scale;
* the class attributes ``uses_time_features`` (``forward`` reads ``x_mark``/``y_mark``) and
  ``channel_independent`` (each output channel depends only on the same input channel), both
  ``bool``, for the network built with its defaults; an option that changes either sets the
  instance's own attribute in ``__init__`` (ETSformer's ``embedding=tslib`` reads the calendar);
  the model suite (``tests/test_models.py``) checks that each instance's declaration is true;
* a constructor that takes ``seq_len`` and ``pred_len`` (interpolated from ``data``) and
  raises :class:`forecast.errors.ConfigError`, with a ``Fix:``, for settings it cannot use.

Optional hooks, with their defaults below: :meth:`Network.fit_training`,
:meth:`Network.diagnostics`, :meth:`Network.training_decomposition`,
:meth:`Network.param_groups`, :meth:`Network.iteration_counts`, :meth:`Network.native_intervals`.
For the model suite only:
:attr:`Network.small_config` and :meth:`Network.parameters_without_gradient`.

Discovery: every public subclass of :class:`Network` defined in a module of
``forecast.models`` (subpackages included) is a network, named by its lower-case class name
(``conf/model/<name>.yaml``); classes in a module named ``base`` are bases, never networks.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from forecast.errors import ConfigError

REQUIRED_ATTRIBUTES = {
    "uses_time_features": "True if forward reads the calendar features x_mark / y_mark, else False",
    "channel_independent": "True if each output channel depends only on the same input channel, else False",
}
HOOKS = ("fit_training", "diagnostics", "training_decomposition", "param_groups", "iteration_counts",
         "parameters_without_gradient", "native_intervals")


class ContractError(TypeError):
    """A class in ``forecast.models`` that does not keep the network contract (a programming
    error of that class, raised when the networks are discovered)."""


class Network(nn.Module):
    """Base class of every network (see the module docstring for the contract)."""

    uses_time_features: ClassVar[bool]
    channel_independent: ClassVar[bool]

    #: Hyperparameters that make a small instance of this network: a few seconds of training on
    #: one CPU thread (the model suite and smoke runs use them; the defaults are the papers').
    small_config: ClassVar[dict[str, Any]] = {}

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None,
                y_mark: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, C]``, ``x_mark [B, L, M]``, ``y_mark [B, H, M]`` -> ``[B, H, C]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ optional hooks
    def fit_training(self, series: torch.Tensor, freq=None, scaler=None) -> None:
        """Estimate what the network takes from the training split outside gradient descent.

        Called by the training pipeline before testing (and by the model suite before any
        forward) with the training split ``series [T, C]`` (z-scored, as ``forward`` sees it),
        the data's frequency (a pandas offset or alias, for default seasonal periods) and its
        fitted scaler (``mean``/``std`` per channel, to work in the data's units). The classical
        baselines estimate their ``refit: once`` parameters here. Default: nothing."""

    def diagnostics(self) -> dict[str, float]:
        """Counts about the last test, logged by the pipeline as ``test/<key>`` (summed over
        DDP processes; keys ending in ``seconds``: the slowest process). Default: none."""
        return {}

    def training_decomposition(self, channels: list[int]) -> dict[str, np.ndarray] | None:
        """Parts of the training split (``{name: [T, len(channels)]}`` in the data's units, e.g.
        observed, trend, seasonal, residual) for the given input channel positions, drawn as
        ``plots/decomposition.png``; ``None``: no figure. Default: ``None``."""
        return None

    def param_groups(self) -> list[dict] | None:
        """Optimiser parameter groups (each a dict with ``params`` and a ``name``), for networks
        whose parameters have roles with their own schedule (ETSformer's smoothing rates);
        ``None``: one group of every parameter. Default: ``None``."""
        return None

    def iteration_counts(self) -> list[torch.Tensor]:
        """Iteration counts of the last forward pass, for networks whose cost depends on their
        input (D-PAD's sifting: steps per component and series); the speed benchmark reports
        their mean and maximum. Default: none."""
        return []

    def native_intervals(self, x: torch.Tensor, levels: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]] | None:
        """The network's own prediction intervals (``intervals.method=native``): ``{level: (lo,
        hi)}``, each ``[B, H, C]`` on the z-scored scale like ``forward``, for the input windows
        ``x [B, L, C]``; ``None``: the network has none (statsmodels-backed baselines such as
        ARIMA and ETS do). Default: ``None``."""
        return None

    def parameters_without_gradient(self) -> set[str]:
        """Names of trainable parameters that get no gradient by construction (kept as in the
        reference implementation, so parameter counts and checkpoints match); the model suite
        checks that every other parameter gets one, and these none. Default: none."""
        return set()


def positive(network: str, **values: int | None) -> None:
    """Raise ``ConfigError`` unless each given shape value (``seq_len=96``…) is a positive
    integer; ``None`` values are skipped."""
    for key, value in values.items():
        if value is not None and (int(value) != value or int(value) < 1):
            where = f"data.{key}" if key in ("seq_len", "pred_len", "enc_in") else f"model.{key}"
            raise ConfigError(f"{network}: {where}={value} must be a positive integer. Fix: set {where} to 1 or more.")


def _parameter_names(function) -> list[str]:
    return [p for p in inspect.signature(function).parameters]


def check_network(cls: type) -> None:
    """Raise :class:`ContractError`, naming the class and the missing part, unless ``cls``
    keeps the network contract (see the module docstring)."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not (inspect.isclass(cls) and issubclass(cls, Network)):
        raise ContractError(f"{name} is not a subclass of forecast.models.base.Network. Fix: derive it from Network.")
    for attribute, meaning in REQUIRED_ATTRIBUTES.items():
        declared = next((vars(k)[attribute] for k in cls.__mro__ if k is not Network and attribute in vars(k)), None)
        if not isinstance(declared, bool):
            got = "does not declare it" if declared is None else f"declares {declared!r}"
            raise ContractError(f"{name}: the network contract needs the class attribute `{attribute}` ({meaning}); "
                                f"the class {got}. Fix: add `{attribute} = True` or `False` to the class body.")
    if cls.forward is Network.forward:
        raise ContractError(f"{name}: the network contract needs `forward(x, x_mark=None, y_mark=None)`. Fix: define it.")
    if _parameter_names(cls.forward)[:4] != ["self", "x", "x_mark", "y_mark"]:
        raise ContractError(f"{name}.forward{inspect.signature(cls.forward)}: the network contract needs "
                            "`forward(self, x, x_mark=None, y_mark=None)`. Fix: take these arguments (unused ones too).")
    init = _parameter_names(cls.__init__)
    missing = [k for k in ("seq_len", "pred_len") if k not in init]
    if missing:
        raise ContractError(f"{name}.__init__ does not take {missing}. Fix: take seq_len and pred_len (the model "
                            "config interpolates them from data).")
    for hook in HOOKS:
        ours, theirs = getattr(Network, hook), getattr(cls, hook)
        if theirs is not ours and _parameter_names(theirs) != _parameter_names(ours):
            raise ContractError(f"{name}.{hook}{inspect.signature(theirs)} does not match the contract's "
                                f"{hook}{inspect.signature(ours)}. Fix: keep the contract's arguments.")
    if not isinstance(cls.small_config, dict):
        raise ContractError(f"{name}.small_config must be a dict of constructor arguments, got {cls.small_config!r}.")
