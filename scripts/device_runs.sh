#!/usr/bin/env bash
# Paper-schedule runs on one GPU, as run on the borrowed H100 (see benchmarks/notes.md):
#   1. CUDA against CPU for every network: the same weights give the same forecasts and
#      gradients (fp32), and bf16 autocast runs;
#   2. the trainings named in RUNS (precision:experiment:seed), all at once on the one GPU;
#   3. the training speed of every model on the GPU (scripts/benchmark.py; SKIP_SPEED=1 skips it).
# Needs: python3 with torch (CUDA), pytorch-lightning, torchmetrics, pandas; hydra-core and
# omegaconf on PYTHONPATH (SITE); the benchmark CSVs under DATA; results go to OUT.
#   SITE=.gpu/site DATA=.gpu/data OUT=/tmp/out RUNS="32-true:etsformer_ettm2_96:2021 ..." bash scripts/device_runs.sh
set -u
OUT=${OUT:?set OUT to a results folder}
DATA=${DATA:-../shared/data}
LIMIT=${LIMIT:-420}            # seconds a training may take before it is stopped (no row then)
EXTRA=${EXTRA:-}               # extra overrides for every training (a dry run: trainer.max_epochs=1 ...)
TRAINER=${TRAINER:-gpu}        # trainer preset (cpu for a dry run here)
export PYTHONUNBUFFERED=1 FORECAST_DATA_DIR=$(realpath "$DATA") PYTHONPATH=$PWD:${SITE:+$(realpath "$SITE"):}${PYTHONPATH:-}
mkdir -p "$OUT" /tmp/logs
cp benchmarks/published.csv "$OUT/"
python3 - <<'EOF' 2>&1 | tee "$OUT/cuda_check.txt"
import torch, pandas, pytorch_lightning
from forecast.models.autoformer import Autoformer
from forecast.models.dlinear import DLinear
from forecast.models.etsformer import ETSformer
print("torch", torch.__version__, "pandas", pandas.__version__, "lightning", pytorch_lightning.__version__)
dev = "cuda" if torch.cuda.is_available() else "cpu"
print("device", torch.cuda.get_device_name(0) if dev == "cuda" else "cpu")
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
x, xm, ym = torch.randn(8, 96, 7), torch.rand(8, 96, 4) - 0.5, torch.rand(8, 96, 4) - 0.5
builders = {"dlinear": lambda: DLinear(96, 96, 7), "autoformer": lambda: Autoformer(96, 96, 7, dropout=0.0),
            "etsformer": lambda: ETSformer(96, 96, 7, k=3, dropout=0.0, augment_std=0.0)}
for name, build in builders.items():
    torch.manual_seed(0)
    cpu = build()
    gpu = build().to(dev)
    gpu.load_state_dict(cpu.state_dict())
    for training in (False, True):
        cpu.train(training); gpu.train(training)
        a = cpu(x, xm, ym); b = gpu(x.to(dev), xm.to(dev), ym.to(dev))
        a.square().mean().backward(); b.square().mean().backward()
        out_err = (a - b.cpu()).abs().max().item()
        # relative to the largest gradient of the tensor or, for tensors whose gradient is zero by
        # construction (biases a decomposition or a norm removes), of the whole network
        scale = max(p.grad.abs().max().item() for p in cpu.parameters() if p.grad is not None)
        grad_err = max((p.grad - q.grad.cpu()).abs().max().item() / max(p.grad.abs().max().item(), 1e-3 * scale)
                       for p, q in zip(cpu.parameters(), gpu.parameters()) if p.grad is not None)
        print(f"{name} training={training}: max |cpu-cuda| forecast {out_err:.2e}, max relative gradient difference {grad_err:.2e}")
        cpu.zero_grad(); gpu.zero_grad()
    with torch.autocast(dev, dtype=torch.bfloat16):
        c = gpu.eval()(x.to(dev), xm.to(dev), ym.to(dev))
    print(f"{name} bf16 autocast: max |bf16-fp32| {(c.float().cpu() - cpu.eval()(x, xm, ym).detach()).abs().max().item():.3f}")
EOF
run() {  # run NAME OVERRIDES...
  local name=$1; shift
  timeout "$LIMIT" python3 train.py "$@" trainer=$TRAINER logger=none record="$OUT/accuracy.csv" num_threads=1 \
    trainer.enable_progress_bar=false hydra.run.dir=/tmp/runs/$name $EXTRA > /tmp/logs/$name.log 2>&1
  echo "$name exit $?"
}
# precision:experiment:seed triples, all trained at once
RUNS=${RUNS:-"32-true:autoformer_etth1_96:2021 32-true:autoformer_etth1_192:2021 32-true:autoformer_etth1_336:2021
  32-true:autoformer_etth1_720:2021 32-true:autoformer_exchange_96:2021 32-true:autoformer_ili_24:2021
  32-true:autoformer_ettm2_96:2021 bf16-mixed:autoformer_etth1_96:2021 bf16-mixed:autoformer_etth1_192:2021
  bf16-mixed:autoformer_etth1_336:2021 bf16-mixed:autoformer_etth1_720:2021 bf16-mixed:autoformer_exchange_96:2021
  bf16-mixed:autoformer_ili_24:2021"}
for r in $RUNS; do
  IFS=: read -r precision experiment seed <<< "$r"
  run ${precision}_${experiment}_$seed experiment=$experiment trainer.precision=$precision seed=$seed &
done
wait
tar czf "$OUT/logs.tgz" -C /tmp logs
[ "$TRAINER" = gpu ] && [ -z "${SKIP_SPEED:-}" ] && for precision in 32-true bf16-mixed; do
  python3 scripts/benchmark.py threads=1 speed_csv="$OUT/speed.csv" render=false -- trainer=gpu trainer.precision=$precision
done
