"""Train Time-Series-Library's Autoformer and ours in lockstep, to tell a code difference from chance.

    python scripts/peers/autoformer_lockstep.py CHECKOUT [--seed 2021] [--init reference|ours] [--epochs N] \
        [--torch-dropout] [--draws N] [train.py overrides: experiment=autoformer_ili_48 data_dir=../shared/data ...]

Where our cell and the reference's (``scripts/benchmark.py mode=peer_accuracy``) differ over
seeds, two things can differ: the code, or the random draws (initial weights, batch order,
dropout masks). This removes the draws that can be shared: TSLib's network is built from the
checkout (``CHECKOUT/models/Autoformer.py``, imported, not copied) at ``--seed``, ours is loaded
with its initial weights (:func:`reference_weights`; ``--init ours``: ours is drawn at the seed and
the reference loaded with its weights), and both are trained by the same loop on
the same batches of our data module (the same windows and scaling as TSLib's loader), each with
the experiment's optimiser and schedule (Adam at 1e-4 halved every epoch from the second,
``type1``, in every Autoformer experiment file); before each step the
generator is reset to the same state for both, so that with ``--torch-dropout`` (ours then uses
``torch.nn.Dropout`` like the reference) their dropout masks are the same draws where the calls
match; ours' own dropout draws its masks otherwise (:mod:`forecast.layers.dropout`). After
every epoch both are scored on every validation and test window; the last line gives each one's
test MSE at its best validation epoch. With dropout 0 the two runs must agree to rounding: a
larger difference is a difference of code.

``--draws N`` trains nothing: it draws both networks' initial weights at N seeds from ``--seed``
on and compares them parameter by parameter (mapped by name): each one's spread (the standard
deviation over its elements, averaged over the seeds) and mean, with the sampling error of that
spread; a parameter whose two spreads differ by more than four standard errors, or whose constant
start differs, is named. It tells whether the two constructors draw from the same distributions.

Our data module, our Autoformer and the reference's network run in this one interpreter (the
reference's network needs only torch and NumPy); the checkout is only read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from forecast.config import compose_train  # noqa: E402
from forecast.errors import ConfigError  # noqa: E402
from forecast.metrics import ForecastMetrics  # noqa: E402

# TSLib's TimeFeatureEmbedding sizes its calendar map by --freq; the one whose width is ours
FREQ_BY_MARKS = {1: "m", 2: "w", 3: "d", 4: "h", 5: "t", 6: "s"}
PROJECTIONS = {"query": "query_projection", "key": "key_projection", "value": "value_projection", "out": "out_projection"}


def reference_weights(state: dict) -> dict:
    """TSLib's Autoformer ``state_dict`` under our parameter names (its kernel-1 convolutions as
    our linear maps); the position table of its embedding, unused by Autoformer, is left out."""
    out = {}

    def correlation(ours: str, theirs: str):
        for a, b in PROJECTIONS.items():
            for t in ("weight", "bias"):
                out[f"{ours}.{a}.{t}"] = state[f"{theirs}.{b}.{t}"]

    def feed_forward(ours: str, theirs: str):
        out[f"{ours}.feed_forward.up.weight"] = state[f"{theirs}.conv1.weight"][..., 0]
        out[f"{ours}.feed_forward.down.weight"] = state[f"{theirs}.conv2.weight"][..., 0]

    for ours, theirs in (("encoder", "enc"), ("decoder", "dec")):
        out[f"{ours}_embedding.value.weight"] = state[f"{theirs}_embedding.value_embedding.tokenConv.weight"]
        if f"{theirs}_embedding.temporal_embedding.embed.weight" in state:
            out[f"{ours}_embedding.calendar.weight"] = state[f"{theirs}_embedding.temporal_embedding.embed.weight"]
    for i in sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.attn_layers.")}):
        correlation(f"encoder.{i}.correlation", f"encoder.attn_layers.{i}.attention")
        feed_forward(f"encoder.{i}", f"encoder.attn_layers.{i}")
    for i in sorted({int(k.split(".")[2]) for k in state if k.startswith("decoder.layers.")}):
        correlation(f"decoder.{i}.self_correlation", f"decoder.layers.{i}.self_attention")
        correlation(f"decoder.{i}.cross_correlation", f"decoder.layers.{i}.cross_attention")
        feed_forward(f"decoder.{i}", f"decoder.layers.{i}")
        out[f"decoder.{i}.trend_projection.weight"] = state[f"decoder.layers.{i}.projection.weight"]
    for t in ("weight", "bias"):
        out[f"encoder_norm.norm.{t}"] = state[f"encoder.norm.layernorm.{t}"]
        out[f"decoder_norm.norm.{t}"] = state[f"decoder.norm.layernorm.{t}"]
        out[f"projection.{t}"] = state[f"decoder.projection.{t}"]
    return out


def reference_options(cfg, data) -> SimpleNamespace:
    """TSLib's ``configs`` for our composed Autoformer cell (its run.py's names)."""
    m = cfg.model
    label = m.label_len if m.label_len is not None else data.seq_len // 2
    if data.mark_dim not in FREQ_BY_MARKS:
        raise ConfigError(f"lockstep: TSLib has no calendar of {data.mark_dim} features. Fix: choose data.calendar_freq "
                          "with 1-6 features (h gives 4).")
    return SimpleNamespace(task_name="long_term_forecast", seq_len=data.seq_len, label_len=label, pred_len=data.pred_len,
                           enc_in=data.enc_in, dec_in=data.enc_in, c_out=data.enc_in, d_model=m.d_model, n_heads=m.n_heads,
                           d_ff=m.d_ff, e_layers=m.e_layers, d_layers=m.d_layers, factor=int(m.factor), dropout=m.dropout,
                           activation=m.activation, moving_avg=m.moving_avg, output_attention=False, embed="timeF",
                           freq=FREQ_BY_MARKS[data.mark_dim])


def compare_draws(build_reference, build_ours, seeds: list[int]) -> list[str]:
    """Both constructors' initial weights at each seed, parameter by parameter (ours' names, the
    reference's through :func:`reference_weights`): the lines to print, one per parameter and a
    last one naming those drawn differently. Two spreads differ when they are more than four
    standard errors apart (the relative error of one spread estimated over n elements is about
    ``1/sqrt(2n)``, so that of the difference of two, averaged over the seeds, ``1/sqrt(n seeds)``);
    a parameter both start at a constant (the layer norms) differs when the constants do."""
    sums: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for seed in seeds:
        torch.manual_seed(seed)
        theirs = reference_weights(build_reference().state_dict())
        torch.manual_seed(seed)
        for name, value in build_ours().state_dict().items():
            row = sums.setdefault(name, [0.0] * 4)
            sizes[name] = value.numel()
            for i, v in enumerate((value.detach().double(), theirs[name].detach().double())):
                row[i] += (v.std().item() if v.numel() > 1 else 0.0) / len(seeds)
                row[2 + i] += v.mean().item() / len(seeds)
    lines, differ = [f"{'parameter':48s} {'elements':>9s} {'spread ours':>12s} {'reference':>10s} {'mean ours':>10s} "
                     f"{'reference':>10s}"], []
    for name, (spread, spread_ref, mean, mean_ref) in sums.items():
        if max(spread, spread_ref) < 1e-12:  # a constant start
            off = abs(mean - mean_ref) > 1e-9
        else:
            off = abs(spread - spread_ref) / max(spread, spread_ref) > 4 / (sizes[name] * len(seeds)) ** 0.5
        differ += [name] if off else []
        lines.append(f"{name:48s} {sizes[name]:9d} {spread:12.5f} {spread_ref:10.5f} {mean:+10.5f} {mean_ref:+10.5f}"
                     f"{'  <- differs' if off else ''}")
    lines.append(f"over seeds {seeds[0]}-{seeds[-1]}: {len(differ)} of {len(sums)} parameters drawn differently"
                 + (f": {', '.join(differ)}" if differ else ""))
    return lines


def every_window_mse(forecast, loader, c_out: int) -> float:
    metrics = ForecastMetrics(c_out=c_out)
    with torch.no_grad():
        for batch in loader:
            metrics.update(forecast(batch), batch["y"])
    return metrics.compute()["mse"].item()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="a Time-Series-Library checkout (its models/Autoformer.py is imported)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's max_epochs")
    parser.add_argument("--torch-dropout", action="store_true", help="ours with torch.nn.Dropout, as the reference")
    parser.add_argument("--init", choices=("reference", "ours"), default="reference",
                        help="whose constructor draws the shared initial weights at --seed")
    parser.add_argument("--draws", type=int, default=0, metavar="N",
                        help="train nothing: compare both constructors' initial weights at N seeds from --seed on")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (default experiment=autoformer_ili_48)")
    args = parser.parse_intermixed_args(argv)
    model_file = Path(args.checkout) / "models" / "Autoformer.py"
    if not model_file.exists():
        raise SystemExit(f"{model_file} does not exist. Fix: give the root of a Time-Series-Library checkout.")
    from hydra.utils import instantiate

    from forecast.data.windows import collate_batch
    from forecast.layers.dropout import Dropout
    from forecast.pipelines.train import build_data

    cfg = compose_train(args.overrides or ["experiment=autoformer_ili_48"])
    if not str(cfg.model._target_).endswith("Autoformer"):
        raise SystemExit(f"lockstep compares Autoformer; the overrides chose {cfg.model._target_}. Fix: an autoformer experiment.")
    torch.set_num_threads(int(cfg.get("num_threads") or 1))
    data = build_data(cfg)  # also fills data.enc_in and data.mark_dim, which the model config reads
    data.setup()
    options = reference_options(cfg, data)
    sys.path.insert(0, str(Path(args.checkout).resolve()))
    sys.dont_write_bytecode = True  # the checkout is only read: no __pycache__ left in it
    from models.Autoformer import Model as Reference  # the checkout's network

    if args.draws:
        print("\n".join(compare_draws(lambda: Reference(options), lambda: instantiate(cfg.model),
                                       list(range(args.seed, args.seed + args.draws)))))
        return 0
    torch.manual_seed(args.seed)
    reference = Reference(options)
    if args.init == "reference":
        ours = instantiate(cfg.model)
        ours.load_state_dict(reference_weights(reference.state_dict()))
    else:  # ours drawn at the seed, copied into the reference through the same (view-sharing) map
        torch.manual_seed(args.seed)
        ours = instantiate(cfg.model)
        theirs = reference_weights(reference.state_dict())
        with torch.no_grad():
            for name, value in ours.state_dict().items():
                theirs[name].copy_(value)
    if args.torch_dropout:
        for module in list(ours.modules()):
            for name, child in module.named_children():
                if isinstance(child, Dropout):
                    setattr(module, name, torch.nn.Dropout(child.p))
    label, horizon = options.label_len, options.pred_len

    def reference_forecast(b):
        decoder_mark = torch.cat([b["x_mark"][:, -label:], b["y_mark"]], dim=1)
        decoder_input = torch.cat([b["x"][:, -label:], torch.zeros_like(b["y"])], dim=1)
        return reference(b["x"], b["x_mark"], decoder_input, decoder_mark)[:, -horizon:]

    runs = {"reference": (reference, reference_forecast), "ours": (ours, lambda b: ours(b["x"], b["x_mark"], b["y_mark"]))}
    optimizers = {k: instantiate(cfg.module.optimizer)(net.parameters()) for k, (net, _) in runs.items()}
    schedules = [instantiate(cfg.module.scheduler)(o) for o in optimizers.values()] if cfg.module.scheduler else []
    order = torch.Generator().manual_seed(args.seed)
    train = torch.utils.data.DataLoader(data.datasets["train"], batch_size=data.batch_size, shuffle=True,
                                        generator=order, collate_fn=collate_batch)
    val, test = data.val_dataloader(), data.test_dataloader()
    epochs = args.epochs or int(cfg.trainer.max_epochs)
    best = {k: (float("inf"), None, 0) for k in runs}
    print(f"lockstep {data.name} {options.seq_len}->{horizon}, seed {args.seed}, initial weights drawn by {args.init}, "
          f"dropout {options.dropout}{' (torch.nn.Dropout in ours)' if args.torch_dropout else ''}, {epochs} epochs; "
          "every-window MSE")
    for epoch in range(epochs):
        lr = optimizers["ours"].param_groups[0]["lr"]
        losses = {k: 0.0 for k in runs}
        for step, batch in enumerate(train):
            state = torch.get_rng_state()
            for k, (net, forecast) in runs.items():
                torch.set_rng_state(state)  # each starts its step from the same generator state
                net.train()
                optimizers[k].zero_grad()
                loss = (forecast(batch) - batch["y"]).square().mean()
                loss.backward()
                optimizers[k].step()
                losses[k] += loss.item()
        line = [f"epoch {epoch + 1:2d} lr {lr:.2e}"]
        for k, (net, forecast) in runs.items():
            net.eval()
            v, t = every_window_mse(forecast, val, data.c_out), every_window_mse(forecast, test, data.c_out)
            if v < best[k][0]:
                best[k] = (v, t, epoch + 1)
            line.append(f"{k}: train {losses[k] / (step + 1):.4f} val {v:.4f} test {t:.4f}")
        print(" | ".join(line), flush=True)
        for schedule in schedules:
            schedule.step()
    print("best validation epoch: " + " | ".join(f"{k} epoch {e}, test MSE {t:.4f}" for k, (v, t, e) in best.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
