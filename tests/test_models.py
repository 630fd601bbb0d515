"""The model suite: every network that ``forecast.config.network_classes`` discovers through the
contract (``forecast/models/base.py``) is checked here, so adding a model is one file in
``forecast/models`` and one in ``conf/model``, and nothing else.

For each network: it keeps the contract and its model file explains every setting it makes
outside ``model:``; shapes for several (L, H, C); the declarations ``uses_time_features`` and
``channel_independent`` are true; gradients reach every trainable parameter but those it
declares; the seed fixes the output; bad shapes fail with ``ConfigError`` and a fix; one run
through the training pipeline with MLflow. Each trainable network learns a noisy seasonal
series with a trend to well below the seasonal-naive error on a fixed small budget; a network
that repeats its input's last value fails that test.
"""

from __future__ import annotations

import inspect
import math
import sys
import textwrap

import numpy as np
import pytest
import torch

from forecast.config import CONF_DIR, model_file_settings, network_classes
from forecast.data.datamodule import ForecastDataModule
from forecast.errors import ConfigError
from forecast.models.base import ContractError, Network, check_network
from tests.helpers import LastValue, runs_of

NETWORKS = network_classes()
SHAPES = [(96, 24, 3), (72, 7, 1), (120, 36, 2)]  # (L, H, C); every classical period fits L >= 49
TRAIN_ROWS, PERIOD = 300, 24


def build(cls: type, seq_len: int, pred_len: int, channels: int, seed: int = 0, **overrides) -> Network:
    """A small instance (its ``small_config``) for these shapes, with ``fit_training`` called on a
    seasonal training series, as the pipeline does before testing."""
    accepted = inspect.signature(cls.__init__).parameters
    args = {k: v for k, v in dict(seq_len=seq_len, pred_len=pred_len, enc_in=channels, mark_dim=4).items() if k in accepted}
    torch.manual_seed(seed)
    network = cls(**{**args, **cls.small_config, **overrides})
    t = torch.arange(TRAIN_ROWS, dtype=torch.float64)[:, None]
    train = torch.sin(2 * math.pi * t / PERIOD + torch.arange(channels)) + 0.1 * torch.randn(TRAIN_ROWS, channels, dtype=torch.float64)
    network.fit_training(train, freq="h", scaler=None)
    return network


def inputs(seq_len: int, pred_len: int, channels: int, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(seq_len, dtype=torch.float32)[None, :, None]
    x = torch.sin(2 * math.pi * t / PERIOD + torch.arange(channels)) + 0.3 * torch.randn(batch, seq_len, channels, generator=g)
    return x, torch.rand(batch, seq_len, 4, generator=g) - 0.5, torch.rand(batch, pred_len, 4, generator=g) - 0.5


def trainable(cls: type) -> bool:
    return any(p.requires_grad for p in build(cls, 96, 24, 2).parameters())


TRAINABLE = sorted(name for name, cls in NETWORKS.items() if trainable(cls))


# ------------------------------------------------------------------ the contract and the model files
def test_every_network_has_a_model_file_and_the_deep_models_are_all_found():
    assert set(NETWORKS) == {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}
    assert {"autoformer", "dlinear", "dpad", "etsformer", "karma"} <= set(TRAINABLE)  # the deep models learn below


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_setting_a_model_file_makes_outside_its_network_has_a_reason(name):
    """A model file may recommend data, trainer, module or schedule settings; each needs a reason
    in its ``recommends:`` block, which every run prints and tags, so none changes a run silently."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    from omegaconf import OmegaConf

    reasons = OmegaConf.load(path).get("recommends") or {}
    settings = model_file_settings(path)
    unexplained = [k for k in settings if not any(k == r or k.startswith(f"{r}.") for r in reasons)]
    assert unexplained == [], f"{path.name} sets {unexplained} without a reason in `recommends:`"
    assert all(any(k == r or k.startswith(f"{r}.") for k in settings) for r in reasons), "a reason for a setting it does not make"
    assert all(len(str(why)) > 10 for why in reasons.values())


class Complete(Network):
    uses_time_features = False
    channel_independent = True

    def __init__(self, seq_len: int, pred_len: int):
        super().__init__()

    def forward(self, x, x_mark=None, y_mark=None):
        return x


def _variant(**body) -> type:
    return type("Broken", (Complete,), {"__module__": "forecast.models.broken", **body})


@pytest.mark.parametrize("cls,message", [
    (type("Broken", (Network,), {"__module__": "forecast.models.broken", "channel_independent": True,
                                 "forward": Complete.forward, "__init__": Complete.__init__}),
     r"forecast\.models\.broken\.Broken: the network contract needs the class attribute `uses_time_features`"),
    (_variant(channel_independent="yes"), r"Broken: .*`channel_independent`.*declares 'yes'"),
    (type("Broken", (Network,), {"__module__": "forecast.models.broken", "uses_time_features": False,
                                 "channel_independent": True, "__init__": Complete.__init__}), r"Broken: .*needs `forward"),
    (_variant(forward=lambda self, x: x), r"Broken\.forward\(self, x\).*Fix:"),
    (_variant(__init__=lambda self, length, horizon: None), r"Broken\.__init__ does not take \['seq_len', 'pred_len'\]"),
    (_variant(fit_training=lambda self, train: None), r"Broken\.fit_training\(self, train\) does not match"),
    (_variant(small_config=[1]), r"Broken\.small_config must be a dict"),
])
def test_a_class_missing_a_required_part_is_named_with_the_part(cls, message):
    with pytest.raises(ContractError, match=message):
        check_network(cls)
    check_network(Complete)  # and the complete one passes


def test_discovery_fails_on_a_model_module_whose_network_misses_a_declaration(tmp_path, monkeypatch):
    """A network that forgets ``uses_time_features`` used to get no config schema, silently."""
    import forecast.models

    (tmp_path / "half_done.py").write_text(textwrap.dedent('''
        from forecast.models.base import Network

        class HalfDone(Network):
            channel_independent = True

            def __init__(self, seq_len: int, pred_len: int):
                super().__init__()

            def forward(self, x, x_mark=None, y_mark=None):
                return x
    '''))
    monkeypatch.setattr(forecast.models, "__path__", [*forecast.models.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "forecast.models.half_done", raising=False)
    with pytest.raises(ContractError, match=r"forecast\.models\.half_done\.HalfDone: .*`uses_time_features`"):
        network_classes()


# ------------------------------------------------------------------ every network
@pytest.mark.parametrize("L,H,C", SHAPES)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_output_shape(name, L, H, C):
    network = build(NETWORKS[name], L, H, C)
    x, x_mark, y_mark = inputs(L, H, C)
    for training in (True, False):
        with torch.no_grad():
            out = network.train(training)(x, x_mark, y_mark)
        assert out.shape == (2, H, C) and torch.isfinite(out).all()


VARIANTS = {"etsformer[embedding=tslib]": ("etsformer", {"embedding": "tslib"})}  # options that change a declaration


@pytest.mark.parametrize("name", [*sorted(NETWORKS), *VARIANTS])
def test_declarations_are_true(name):
    """``uses_time_features``: the calendar changes the forecast exactly when declared;
    ``channel_independent``: changing channel 0 leaves the other channels' forecasts alone
    exactly when declared (in evaluation, where nothing is drawn at random). The declarations
    are the instance's: an option may change them."""
    base, options = VARIANTS.get(name, (name, {}))
    cls = NETWORKS[base]
    network = build(cls, 96, 24, 3, **options).eval()
    assert network.uses_time_features == (cls.uses_time_features if not options else True)
    x, x_mark, y_mark = inputs(96, 24, 3)
    with torch.no_grad():
        out = network(x, x_mark, y_mark)
        other_calendar = network(x, x_mark.flip(1), torch.rand_like(y_mark))
        changed = x.clone()
        changed[..., 0] = torch.randn(2, 96)
        other_channel = network(changed, x_mark, y_mark)
    assert (not torch.allclose(out, other_calendar)) == network.uses_time_features
    assert not torch.allclose(out[..., 0], other_channel[..., 0])
    assert torch.allclose(out[..., 1:], other_channel[..., 1:], rtol=0, atol=1e-6) == network.channel_independent


@pytest.mark.parametrize("name", TRAINABLE)
def test_gradients_reach_every_trainable_parameter_but_those_declared(name):
    network = build(NETWORKS[name], 48, 12, 3).train()
    x, x_mark, y_mark = inputs(48, 12, 3, batch=8)
    network(x, x_mark, y_mark).square().mean().backward()
    grads = {n: (0.0 if p.grad is None else p.grad.abs().max().item()) for n, p in network.named_parameters() if p.requires_grad}
    declared = network.parameters_without_gradient()
    assert declared <= set(grads)
    assert [n for n, g in grads.items() if g == 0 and n not in declared] == []  # every other parameter is reached
    scale = max(grads.values())
    assert [n for n in declared if grads[n] > 1e-6 * scale] == []  # and those declared get none (up to rounding)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_seed_fixes_the_output(name):
    cls = NETWORKS[name]
    x, x_mark, y_mark = inputs(72, 12, 2)
    outs = []
    for _ in range(2):
        network = build(cls, 72, 12, 2, seed=3).train()
        torch.manual_seed(5)  # dropout and augmentation draws
        with torch.no_grad():
            outs.append((network(x, x_mark, y_mark), network.eval()(x, x_mark, y_mark), network(x, x_mark, y_mark)))
    for first, second in zip(*outs):
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[0][2], rtol=0, atol=0)  # evaluation is deterministic


@pytest.mark.parametrize("bad", [dict(seq_len=0), dict(pred_len=0), dict(pred_len=-3)])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bad_shapes_fail_with_a_config_error_and_a_fix(name, bad):
    cls = NETWORKS[name]
    args = {k: v for k, v in dict(seq_len=96, pred_len=24, enc_in=3).items() if k in inspect.signature(cls.__init__).parameters}
    with pytest.raises(ConfigError, match=r"Fix:"):
        cls(**{**args, **cls.small_config, **bad})


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_training_run_reports_each_recommendation_of_its_model_file(name, make_config, caplog):
    """One short run of the training pipeline (two batches) with the MLflow logger: finite test
    metrics, and one log line for each setting of the model file, applied or (the learning rate
    given here) overridden, in the run's ``recommends`` tag too, with the reasons as params."""
    import logging

    from forecast.pipelines.train import run

    small = [f"model.{k}={v}" for k, v in NETWORKS[name].small_config.items()]
    cfg = make_config(f"model={name}", *small, "trainer=debug", "data.seq_len=48", "data.pred_len=12", "plot_windows=1",
                      "log_model=false", "module.optimizer.lr=0.002")
    with caplog.at_level(logging.INFO, logger="forecast.pipelines.train"):
        metrics = run(cfg)
    assert np.isfinite(metrics["test/mse"]) and metrics["test/mse"] > 0
    _, runs = runs_of(make_config.tracking_uri, "etth1-debug")  # a two-batch run: a debug run
    (record,) = runs
    assert record.info.status == "FINISHED" and record.info.run_name == f"{name}-etth1-48-12"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"model={name} ")]
    assert len(lines) == len(cfg.recommends)
    assert record.data.tags["recommends"] == ("\n".join(lines) or "none")
    for key, why in cfg.recommends.items():
        (line,) = [line for line in lines if f" {key}=" in line]
        overridden = key == "module.optimizer.lr"
        assert line.endswith(f"({why}); this run keeps 0.002") if overridden else line.endswith(f": {why}"), line
        assert record.data.params[f"recommends.{key}"] == why


# ------------------------------------------------------------------ learning
LEARN_STEPS, LEARN_BATCH, LEARN_LR = 150, 32, 1e-2


@pytest.fixture(scope="module")
def seasonal_trend_data(tmp_path_factory):
    """Two noisy daily cycles on a rising trend, z-scored on the training split: the seasonal
    naive forecast pays the noise twice and the trend over a horizon, a good model about once."""
    import pandas as pd

    n, rng = 1600, np.random.default_rng(0)
    t = np.arange(n)
    frame = pd.DataFrame({"date": pd.date_range("2021-01-01", periods=n, freq="h")})
    for c, name in enumerate(["load", "OT"]):
        frame[name] = 0.01 * (c + 1) * t + np.sin(2 * np.pi * t / 24 + c) + 0.4 * np.sin(4 * np.pi * t / 24) \
            + 0.3 * rng.standard_normal(n)
    path = tmp_path_factory.mktemp("learn") / "seasonal.csv"
    frame.to_csv(path, index=False)
    datamodule = ForecastDataModule(name="seasonal", path=str(path), seq_len=96, pred_len=24, batch_size=LEARN_BATCH)
    datamodule.setup()
    test = datamodule.datasets["test"]
    batch = test.__getitems__(list(range(len(test))))
    naive = batch["x"][:, -24:, :]  # the last cycle of the look-back, repeated
    return datamodule, batch, float(((naive - batch["y"]) ** 2).mean())


def learned_mse(network: Network, datamodule: ForecastDataModule, batch: dict) -> float:
    """Test MSE after ``LEARN_STEPS`` Adam steps on the MSE (none for a network without parameters)."""
    params = [p for p in network.parameters() if p.requires_grad]
    if params:
        groups = network.param_groups()
        optimizer = torch.optim.Adam(groups if groups is not None else params, lr=LEARN_LR)
        network.train()
        steps, generator = 0, torch.Generator().manual_seed(0)
        train = datamodule.datasets["train"]
        while steps < LEARN_STEPS:
            for start in range(0, len(train) - LEARN_BATCH + 1, LEARN_BATCH):
                picks = torch.randperm(len(train), generator=generator)[:LEARN_BATCH].tolist()
                b = train.__getitems__(picks)
                loss = ((network(b["x"], b["x_mark"], b["y_mark"]) - b["y"]) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                if steps == LEARN_STEPS:
                    break
    network.eval()
    with torch.no_grad():
        pred = network(batch["x"], batch["x_mark"], batch["y_mark"])
    return float(((pred - batch["y"]) ** 2).mean())


LEARNS = 0.7  # "well below": at most 70 % of the seasonal-naive error (the networks reach 0.35-0.56)


@pytest.mark.parametrize("name", [*TRAINABLE, "last value (must fail)"])
def test_learns_a_seasonal_series_with_trend_well_below_seasonal_naive(name, seasonal_trend_data):
    datamodule, batch, naive_mse = seasonal_trend_data
    if name in NETWORKS:
        cls = NETWORKS[name]
        accepted = inspect.signature(cls.__init__).parameters
        args = {k: v for k, v in dict(seq_len=96, pred_len=24, enc_in=2, mark_dim=datamodule.mark_dim).items() if k in accepted}
        torch.manual_seed(0)
        network = cls(**{**args, **cls.small_config})
    else:
        network = LastValue(96, 24)
    ratio = learned_mse(network, datamodule, batch) / naive_mse
    if name in NETWORKS:
        assert ratio < LEARNS, f"{name}: test MSE {ratio:.2f} x seasonal naive after {LEARN_STEPS} steps"
    else:  # the criterion can fail: repeating the last value is far from learning the season
        assert ratio > LEARNS
