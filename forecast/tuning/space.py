"""A study's search space: ``hydra.sweeper.params`` of ``conf/hparams_search/<model>.yaml``.

Each entry is ``<config key>: <range>`` in the grammar of Hydra sweeps, the one the
hydra-optuna-sweeper plugin and lightning-hydra-template's ``hparams_search`` files use, with
the same meaning, so their files carry over:

* ``choice(a, b, …)``: one of the values (any override value: numbers, words, ``[24, 168]``);
* ``range(low, high[, step])``: an integer (a float if a bound or the step is one) from ``low``
  to ``high``, both included, on the step; ``tag(log, range(low, high))`` on a log scale;
* ``interval(low, high)``: a float between the bounds; ``tag(log, interval(low, high))`` on a
  log scale (learning rates);
* a plain value: fixed for every trial.

Everything here is checked before any trial runs; a mistake raises
:class:`~forecast.errors.ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from forecast.errors import ConfigError

GRAMMAR = ("choice(a, b, …), range(low, high[, step]) or interval(low, high), "
           "with tag(log, …) around a range or interval for a log scale")

# Keys a study sets itself, or that would make its trials something else than trainings scored
# on the validation split: never searched.
RESERVED = {
    "train": "every trial trains",
    "test": "trials never read the test split; the best trial is tested once when the study ends",
    "ckpt_path": "each trial trains from scratch",
    "record": "record the best trial afterwards with its override line",
    "register": "register=true on the command line registers the best trial's model",
    "log_model": "trials log no model; the best trial's test run does",
    "hparams_search": "one search space per study",
}
_LIMITS = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches",
           "trainer.max_steps", "trainer.fast_dev_run", "trainer.overfit_batches")


@dataclass(frozen=True)
class Param:
    """One entry of the space: a searched key (``distribution``) or a fixed one (``fixed``)."""

    key: str                 # the override key as written (``+`` adds a key the config lacks)
    text: str                # the range as written, e.g. "tag(log, interval(1e-4, 1e-1))"
    distribution: Any = None  # an optuna distribution, or None for a fixed value
    fixed: str | None = None  # the override value of a fixed entry
    choice_texts: tuple[str, ...] = ()  # a choice's values as override text, in the distribution's order

    @property
    def name(self) -> str:
        """The key without its ``+``: the name of the parameter in Optuna and MLflow."""
        return self.key.lstrip("+")

    def override(self, value: Any) -> str:
        """``key=value`` for a value of this parameter (exact: floats by ``repr``)."""
        if self.distribution is None:
            return f"{self.key}={self.fixed}"
        if self.choice_texts:
            return f"{self.key}={self.choice_texts[_index(self.distribution.choices, value)]}"
        return f"{self.key}={value!r}"

    def candidates(self) -> list[str]:
        """Overrides that span the parameter (every choice, both bounds), composed before any trial
        so that a value the config refuses fails the study at once."""
        if self.distribution is None:
            return [self.override(None)]
        if self.choice_texts:
            return [f"{self.key}={t}" for t in self.choice_texts]
        return [self.override(self.distribution.low), self.override(self.distribution.high)]


def _index(choices, value) -> int:
    return next(i for i, c in enumerate(choices) if type(c) is type(value) and c == value)


def parse_space(params: Mapping[str, Any] | DictConfig, where: str) -> list[Param]:
    """The entries of ``params`` as :class:`Param` (searched or fixed), checked one by one:
    the grammar, an empty choice, bounds in the wrong order, a log scale that reaches zero, a
    reserved key. ``where`` names the file in the messages."""
    import optuna
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    if isinstance(params, DictConfig):
        params = OmegaConf.to_container(params, resolve=False)
    if not params:
        raise ConfigError(f"{where}: the search space is empty. Fix: list the keys to search under hydra.sweeper.params, "
                          f"each with {GRAMMAR}.")
    parser = OverridesParser.create()
    space = []
    for key, value in params.items():
        key = str(key)
        name = key.lstrip("+")
        if key.startswith("~") or name in RESERVED or any(name.startswith(k) for k in _LIMITS) or name.startswith("hydra."):
            why = RESERVED.get(name) or ("a trial's budget is epochs (trainer.max_epochs), never batch or step limits, "
                                         "which make a smoke run" if name.startswith("trainer.") else "not a setting of a trial")
            raise ConfigError(f"{where}: {key} cannot be searched ({why}). Fix: remove it from hydra.sweeper.params.")
        text = _text(value)
        try:
            override = parser.parse_override(f"{key}={text}")
        except HydraException as error:
            detail = str(error).strip().splitlines()[0]
            detail = detail.split(": ", 1)[-1] if "while evaluating" in detail else detail
            raise ConfigError(f"{where}: {key}: {text!r} is not a search range ({detail}). Fix: write {GRAMMAR}.") from None
        sweep = override.value()
        bad = f"{where}: {key}: {text}"
        try:
            if not override.is_sweep_override():
                space.append(Param(key, text, fixed=override.get_value_element_as_str()))
            elif isinstance(sweep, ChoiceSweep):
                if sweep.shuffle or sweep.tags:
                    raise ConfigError(f"{bad}: tags and shuffle do not apply to a choice. Fix: write choice(a, b, …).")
                values = list(override.sweep_iterator())
                texts = tuple(str(v).lower() if isinstance(v, bool) else t  # true, as YAML and Hydra write it
                              for v, t in zip(values, override.sweep_string_iterator()))
                if len(set(texts)) != len(texts):
                    raise ConfigError(f"{bad} lists a value twice. Fix: list each value once.")
                native = [v if isinstance(v, (bool, int, float, str)) else t for v, t in zip(values, texts)]
                space.append(Param(key, text, optuna.distributions.CategoricalDistribution(native), choice_texts=texts))
            elif isinstance(sweep, (RangeSweep, IntervalSweep)):
                space.append(Param(key, text, _numeric(sweep, bad)))
            else:
                raise ConfigError(f"{bad} is not a search range. Fix: write {GRAMMAR}.")
        except ValueError as error:  # optuna's own checks of a distribution
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"{bad}: {error}. Fix: write {GRAMMAR}.") from None
    return space


def _text(value: Any) -> str:
    """A YAML value as override text (``true``, ``null``, ``[24, 168]``, or the string itself)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value)


def _numeric(sweep, bad: str):
    """The optuna distribution of a ``range``/``interval``, its bounds checked."""
    import optuna
    from hydra.core.override_parser.types import IntervalSweep

    log = "log" in sweep.tags
    if set(sweep.tags) - {"log"}:
        raise ConfigError(f"{bad}: unknown tag(s) {sorted(set(sweep.tags) - {'log'})}. Fix: the only tag is log.")
    if isinstance(sweep, IntervalSweep):
        low, high, step = sweep.start, sweep.end, None
    else:
        if sweep.shuffle:
            raise ConfigError(f"{bad}: shuffle does not apply to a search. Fix: write range(low, high[, step]).")
        low, high, step = sweep.start, sweep.stop, sweep.step
    if low is None or high is None:
        raise ConfigError(f"{bad} needs both bounds. Fix: write range(low, high[, step]) or interval(low, high).")
    if low > high:
        raise ConfigError(f"{bad}: the low bound {low} is above the high bound {high}. Fix: write the smaller bound first.")
    if log and low <= 0:
        raise ConfigError(f"{bad}: a log scale needs a low bound above 0, not {low}. Fix: raise the low bound or drop tag(log, …).")
    if step is not None and step <= 0:
        raise ConfigError(f"{bad}: the step {step} must be positive. Fix: give a positive step.")
    if isinstance(sweep, IntervalSweep):
        return optuna.distributions.FloatDistribution(float(low), float(high), log=log)
    if all(isinstance(v, int) for v in (low, high, step)):
        if log and step != 1:
            raise ConfigError(f"{bad}: a log-scale range takes no step. Fix: write tag(log, range(low, high)).")
        if (high - low) % step:
            raise ConfigError(f"{bad}: {high} is not on the steps of {step} from {low}. Fix: make high - low a multiple of the step.")
        return optuna.distributions.IntDistribution(int(low), int(high), log=log, step=int(step))
    if log:
        raise ConfigError(f"{bad}: a log-scale range of floats takes no step. Fix: write tag(log, interval(low, high)).")
    return optuna.distributions.FloatDistribution(float(low), float(high), step=float(step))


def check_keys(space: list[Param], cfg: DictConfig, where: str) -> None:
    """Raise for an entry whose key the composed config lacks (a misspelt key), naming the closest
    settings; keys written with ``+`` add a setting and are left to the composition check."""
    missing = object()
    for param in space:
        if param.key.startswith("+"):
            continue
        if OmegaConf.select(cfg, param.key, default=missing, throw_on_missing=False) is not missing:
            continue
        parent_key, _, leaf = param.key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        siblings = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
        close = difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)
        hint = " Did you mean " + " or ".join(f"{parent_key}.{c}" if parent_key else c for c in close) + "?" if close else ""
        raise ConfigError(f"{where}: {param.key}: no such setting in this run's config.{hint} Fix: correct the key "
                          "(`python train.py <your overrides> --cfg job` prints every setting), or write +key to add one.")


def fingerprint(space: list[Param]) -> dict[str, str]:
    """``{key: range as written}``: what a resumed study must search again."""
    return {p.key: p.text for p in space}
