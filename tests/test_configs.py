"""Every config composes and instantiates; schemas reject misspelt keys and mistyped values."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forecast.pipelines.train import build_callbacks, build_data, build_module
from tests.helpers import CONF, ETTH1, compose

CLASSICAL = "forecast.models.classical."  # the parameter-free networks (statsmodels baselines)
GROUPS = {group: sorted(p.stem for p in (CONF / group).glob("*.yaml")) for group in ("data", "model", "trainer", "schedule", "logger", "experiment")}


def _options():
    for group, names in GROUPS.items():
        for name in names:
            yield f"{group}={name}"


@pytest.mark.parametrize("override", list(_options()))
def test_every_config_composes_and_instantiates(override, make_config, monkeypatch):
    extra = ["data.path=" + str(ETTH1)] if override == "data=csv" else []
    if override == "schedule=etsformer_warmup":  # needs a network with smoothing rates
        extra = ["model=etsformer"]
    cfg = make_config(override, *extra)
    datamodule = instantiate(cfg.data)
    assert datamodule.seq_len == cfg.data.seq_len
    if Path(datamodule.path).exists():  # of the benchmark files only ETTh1 is bundled
        datamodule = build_data(cfg)
    else:
        cfg.data.enc_in, cfg.data.mark_dim = 7, 4
        scaler = SimpleNamespace(mean=np.zeros(7), std=np.ones(7))
        datamodule = SimpleNamespace(c_out=7, target_scaler=scaler, mase_scale=np.ones(7))
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    module = build_module(cfg, datamodule)
    if cfg.model._target_.startswith(CLASSICAL):  # statistical baselines: only tested, nothing to optimise
        assert not module.trainable and not list(module.network.parameters())
        assert build_callbacks(cfg, module.trainable, logged=True) == []
    else:  # every other network is trained
        assert module.trainable
        optimizers = module.configure_optimizers()
        optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
        group = optimizer.param_groups[0]
        assert group.get("initial_lr", group["lr"]) == cfg.module.optimizer.lr  # a schedule may start elsewhere
        assert {type(c).__name__ for c in build_callbacks(cfg, True, logged=True)} == {"EarlyStopping", "ModelCheckpoint", "LearningRateMonitor"}
    if override != "trainer=gpu" or torch.cuda.is_available():  # a GPU trainer cannot be built without one
        trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
        assert trainer.max_epochs == cfg.trainer.max_epochs and trainer.num_devices == cfg.trainer.devices
    if cfg.logger and "_target_" in cfg.logger:
        logger = instantiate(cfg.logger)
        assert logger._experiment_name == cfg.data.name


def test_experiment_sets_the_paper_settings(make_config):
    cfg = make_config("experiment=dlinear_etth1_336")
    assert (cfg.data.name, cfg.data.seq_len, cfg.data.pred_len, cfg.module.optimizer.lr) == ("etth1", 336, 336, 0.005)
    assert cfg.model.seq_len == 336 and cfg.model.pred_len == 336  # interpolated from data


@pytest.mark.parametrize("override,message", [
    ("model.kernal_size=5", "Could not override 'model.kernal_size'"),
    ("data.seqlen=5", "Could not override 'data.seqlen'"),
    ("trainer.max_epoch=5", "Could not override 'trainer.max_epoch'"),
    ("seeed=1", "Could not override 'seeed'"),
    ("data.seq_len=abc", "Error merging override data.seq_len=abc"),
    ("model.individual=maybe", "Error merging override model.individual=maybe"),
    ("model=nope", "Could not find 'model/nope'"),
])
def test_misspelt_or_mistyped_keys_fail_at_compose_time(override, message, make_config):
    with pytest.raises(ConfigCompositionException, match=message):
        make_config(override)


def test_a_misspelt_key_inside_a_config_file_fails_at_compose_time(tmp_path):
    """The schemas also guard the YAML files themselves, not only command-line overrides."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    for item in CONF.iterdir():
        if item.name != "experiment":
            (conf / item.name).symlink_to(item)
    (conf / "experiment" / "typo.yaml").write_text("# @package _global_\nmodel:\n  kernal_size: 5\n")
    with pytest.raises(ConfigCompositionException, match="kernal_size"):
        compose("train", ["experiment=typo"], conf_dir=conf)


def test_every_network_has_a_model_config_and_nothing_else_gets_a_schema():
    from forecast.config import network_classes

    assert set(network_classes()) == set(GROUPS["model"])  # sub-blocks (EncoderLayer, …) are not networks


@pytest.mark.parametrize("model", GROUPS["model"])
def test_debug_trainer_caps_the_steps_whatever_the_model_recommends(model, make_config):
    cfg = make_config(f"model={model}", "trainer=debug")
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert trainer.max_steps == 2 and trainer.limit_train_batches == 2
