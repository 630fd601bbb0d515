"""``scripts/peers/autoformer_lockstep.py``: the reference's initial weights loaded into ours, both
trained on the same batches. The reference is faked: a network holding its parameters under
Time-Series-Library's names and shapes, whose forward is ours through the script's own mapping
(plus an offset the test chooses), so the test checks the mapping's coverage and the loop, not TSLib."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "peers" / "autoformer_lockstep.py"
sys.path.insert(0, str(SCRIPT.parent))
import autoformer_lockstep  # noqa: E402  (a script of scripts/peers, not a package)

FAKE = '''
import torch
from torch import nn
from torch.func import functional_call
from autoformer_lockstep import reference_weights
from forecast.models.autoformer import Autoformer

OFFSET = {offset}
SCALE = {scale}  # None: the fake's own draws (randn * 0.05); else ours' draws, these TSLib names scaled

def names(c):
    d, f = c.d_model, c.d_ff
    shapes = {{}}
    def correlation(prefix):
        for p in ("query", "key", "value", "out"):
            shapes[f"{{prefix}}.{{p}}_projection.weight"] = (d, d)
            shapes[f"{{prefix}}.{{p}}_projection.bias"] = (d,)
    for side, c_in in (("enc", c.enc_in), ("dec", c.dec_in)):
        shapes[f"{{side}}_embedding.value_embedding.tokenConv.weight"] = (d, c_in, 3)
        shapes[f"{{side}}_embedding.temporal_embedding.embed.weight"] = (d, {{"h": 4, "w": 2}}[c.freq])
    for i in range(c.e_layers):
        correlation(f"encoder.attn_layers.{{i}}.attention")
        shapes[f"encoder.attn_layers.{{i}}.conv1.weight"] = (f, d, 1)
        shapes[f"encoder.attn_layers.{{i}}.conv2.weight"] = (d, f, 1)
    for i in range(c.d_layers):
        correlation(f"decoder.layers.{{i}}.self_attention")
        correlation(f"decoder.layers.{{i}}.cross_attention")
        shapes[f"decoder.layers.{{i}}.conv1.weight"] = (f, d, 1)
        shapes[f"decoder.layers.{{i}}.conv2.weight"] = (d, f, 1)
        shapes[f"decoder.layers.{{i}}.projection.weight"] = (c.c_out, d, 3)
    for side in ("encoder", "decoder"):
        shapes[f"{{side}}.norm.layernorm.weight"] = (d,)
        shapes[f"{{side}}.norm.layernorm.bias"] = (d,)
    shapes["decoder.projection.weight"] = (c.c_out, d)
    shapes["decoder.projection.bias"] = (c.c_out,)
    return shapes

class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.net = Autoformer(c.seq_len, c.pred_len, c.enc_in, {{"h": 4, "w": 2}}[c.freq], c.label_len, d_model=c.d_model,
                              n_heads=c.n_heads, d_ff=c.d_ff, e_layers=c.e_layers, d_layers=c.d_layers,
                              moving_avg=c.moving_avg, factor=c.factor, dropout=c.dropout, activation=c.activation)
        self.flat = nn.ParameterDict()
        for name, shape in names(c).items():
            self.flat[name.replace(".", "__")] = nn.Parameter(torch.randn(shape) * 0.05)
        if SCALE is not None:
            with torch.no_grad():
                for ours_name, view in reference_weights(self.state_dict()).items():
                    view.copy_(self.net.state_dict()[ours_name])
                for name, factor in SCALE.items():
                    self.flat[name.replace(".", "__")].mul_(factor)

    def state_dict(self, *a, **k):
        return {{n.replace("__", "."): p for n, p in self.flat.items()}}

    def forward(self, x, x_mark, x_dec, x_mark_dec):
        assert torch.equal(x_dec[:, -self.c.pred_len:], torch.zeros_like(x_dec[:, -self.c.pred_len:]))
        weights = reference_weights({{n.replace("__", "."): p for n, p in self.flat.items()}})
        out = functional_call(self.net, weights, (x, x_mark, x_mark_dec[:, self.c.label_len:]))
        return torch.cat([x_dec[:, :self.c.label_len], out + OFFSET], dim=1)
'''

SMALL = ["model=autoformer", "data.seq_len=24", "data.pred_len=12", "model.d_model=16", "model.n_heads=2",
         "model.d_ff=32", "model.moving_avg=5", "model.e_layers=1", "model.dropout=0", "data.batch_size=256"]


def _checkout(folder: Path, offset: float, scale: dict | None = None) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "Autoformer.py").write_text(FAKE.format(offset=offset, scale=repr(scale)))
    sys.modules.pop("models", None), sys.modules.pop("models.Autoformer", None)
    return folder


def _epochs(out: str) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in re.findall(r"(?:train|val|test) ([0-9.]+)", line))
            for line in out.splitlines() if line.startswith("epoch")]


@pytest.mark.parametrize("offset, init", [(0.0, "reference"), (0.0, "ours"), (0.5, "reference")])
def test_the_same_code_trains_identically_and_different_code_does_not(tmp_path, capsys, offset, init):
    checkout = _checkout(tmp_path / "tslib", offset)
    assert autoformer_lockstep.main([str(checkout), "--epochs", "2", "--init", init, *SMALL]) == 0
    out = capsys.readouterr().out
    rows = _epochs(out)
    assert len(rows) == 2 and all(len(r) == 6 for r in rows)  # train, val, test for each side
    for reference, ours in ((r[:3], r[3:]) for r in rows):
        if offset == 0:
            assert reference == pytest.approx(ours, rel=1e-4)  # every parameter mapped, same batches and rates
        else:
            assert reference[0] > ours[0] + 0.1  # an offset the reference adds shows in its own losses only
    assert rows[1][0] < rows[0][0]  # it trains
    assert "best validation epoch: reference epoch" in out


def test_the_mapping_leaves_none_of_ours_unset():
    from forecast.models.autoformer import Autoformer

    ours = Autoformer(24, 12, 3, 4, 12, d_model=16, n_heads=2, d_ff=32, e_layers=2, d_layers=1, moving_avg=5)
    fake = {"enc_embedding.value_embedding.tokenConv.weight": torch.zeros(16, 3, 3),
            "dec_embedding.value_embedding.tokenConv.weight": torch.ones(16, 3, 3)}
    for side in ("enc", "dec"):
        fake[f"{side}_embedding.temporal_embedding.embed.weight"] = torch.zeros(16, 4)
    for i in range(2):
        for p in ("query", "key", "value", "out"):
            fake[f"encoder.attn_layers.{i}.attention.{p}_projection.weight"] = torch.full((16, 16), float(i))
            fake[f"encoder.attn_layers.{i}.attention.{p}_projection.bias"] = torch.zeros(16)
        fake[f"encoder.attn_layers.{i}.conv1.weight"] = torch.zeros(32, 16, 1)
        fake[f"encoder.attn_layers.{i}.conv2.weight"] = torch.zeros(16, 32, 1)
    for a in ("self_attention", "cross_attention"):
        for p in ("query", "key", "value", "out"):
            fake[f"decoder.layers.0.{a}.{p}_projection.weight"] = torch.zeros(16, 16)
            fake[f"decoder.layers.0.{a}.{p}_projection.bias"] = torch.zeros(16)
    fake["decoder.layers.0.conv1.weight"] = torch.zeros(32, 16, 1)
    fake["decoder.layers.0.conv2.weight"] = torch.zeros(16, 32, 1)
    fake["decoder.layers.0.projection.weight"] = torch.zeros(3, 16, 3)
    for side in ("encoder", "decoder"):
        fake[f"{side}.norm.layernorm.weight"] = torch.ones(16)
        fake[f"{side}.norm.layernorm.bias"] = torch.zeros(16)
    fake["decoder.projection.weight"] = torch.zeros(3, 16)
    fake["decoder.projection.bias"] = torch.zeros(3)
    fake["enc_embedding.position_embedding.pe"] = torch.zeros(1, 5000, 16)  # TSLib's table, unused by Autoformer
    mapped = autoformer_lockstep.reference_weights(fake)
    assert set(mapped) == set(ours.state_dict())  # every parameter of ours, nothing else
    ours.load_state_dict(mapped)  # and every shape fits
    assert torch.equal(ours.decoder_embedding.value.weight, torch.ones(16, 3, 3))  # the decoder's, not the encoder's
    assert torch.equal(ours.encoder[1].correlation.key.weight, torch.ones(16, 16))  # the second layer's


def test_refusals_name_the_fix(tmp_path):
    with pytest.raises(SystemExit, match="models/Autoformer.py does not exist"):
        autoformer_lockstep.main([str(tmp_path)])
    checkout = _checkout(tmp_path / "tslib", 0.0)
    with pytest.raises(SystemExit, match="lockstep compares Autoformer"):
        autoformer_lockstep.main([str(checkout), "model=dlinear"])


TSLIB = REPO.parent / "shared" / "peers" / "tslib"


@pytest.mark.skipif(not (TSLIB / "models" / "Autoformer.py").exists(), reason="no Time-Series-Library checkout beside this one")
def test_ours_with_the_reference_weights_forecasts_as_the_reference(monkeypatch):
    """Against the real network of the checkout beside this one (read, not copied): the same
    forecast in training and evaluation mode, on a decoder longer than the encoder (padded keys)."""
    from types import SimpleNamespace

    from forecast.models.autoformer import Autoformer

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(TSLIB))
    for name in ("models", "models.Autoformer", "layers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    from models.Autoformer import Model

    c = SimpleNamespace(task_name="long_term_forecast", seq_len=36, label_len=18, pred_len=48, enc_in=7, dec_in=7, c_out=7,
                        d_model=32, n_heads=4, d_ff=64, e_layers=2, d_layers=1, factor=3, dropout=0.0, activation="gelu",
                        moving_avg=25, output_attention=False, embed="timeF", freq="h")
    torch.manual_seed(0)
    reference = Model(c).double()
    ours = Autoformer(36, 48, 7, 4, 18, d_model=32, n_heads=4, d_ff=64, moving_avg=25, dropout=0.0).double()
    ours.load_state_dict(autoformer_lockstep.reference_weights(reference.state_dict()))
    x = torch.randn(4, 36, 7, dtype=torch.float64).cumsum(1)
    x_mark, y_mark = torch.rand(4, 36, 4, dtype=torch.float64), torch.rand(4, 48, 4, dtype=torch.float64)
    decoder_input = torch.cat([x[:, -18:], torch.zeros(4, 48, 7, dtype=torch.float64)], dim=1)
    for mode in ("train", "eval"):
        reference.train(mode == "train"), ours.train(mode == "train")
        theirs = reference(x, x_mark, decoder_input, torch.cat([x_mark[:, -18:], y_mark], dim=1))[:, -48:]
        torch.testing.assert_close(ours(x, x_mark, y_mark), theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale, differ", [
    (None, None),  # the fake's N(0, 0.05) start against torch's default uniform ones and the layer norms' ones
    ({}, []),  # ours' own draws
    ({"decoder.projection.weight": 2.0, "encoder.norm.layernorm.weight": 1.5}, ["projection.weight", "encoder_norm.norm.weight"]),
])
def test_draws_names_the_parameters_drawn_differently(tmp_path, capsys, scale, differ):
    checkout = _checkout(tmp_path / "tslib", 0.0, scale)
    assert autoformer_lockstep.main([str(checkout), "--draws", "3", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "epoch" not in out  # nothing trains
    last = out.strip().splitlines()[-1]
    found = re.fullmatch(r"over seeds 2021-2023: (\d+) of (\d+) parameters drawn differently(?:: (.*))?", last)
    assert found, last
    named = found.group(3).split(", ") if found.group(3) else []
    if differ is None:
        assert int(found.group(1)) > int(found.group(2)) // 2 and "encoder_norm.norm.weight" in named
    else:
        assert sorted(named) == sorted(differ) and int(found.group(1)) == len(differ)
