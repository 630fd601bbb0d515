"""Time training steps of the official D-PAD code (XYBbo5/D-PAD, MIT licence).

Run by ``scripts/benchmark.py mode=peer peer.dpad=<checkout>`` with the reference's own
interpreter, from the root of the checkout (nothing of the checkout is copied or changed;
``PYTHONDONTWRITEBYTECODE`` keeps its folders free of byte-code):

    python <repo>/scripts/peers/dpad_step.py THREADS WARMUP ITERS <D-PAD singlecard.py arguments>

It builds the official experiment (``experiments.exp_ETT.Exp_ETT``: the network its
``--model_name`` selects, its training loader, Adam and criterion) from the official
``singlecard.py`` argument parser, and times the body of ``Exp_ETT.train``'s loop for full
batches: zero_grad, ``_process_one_batch_DPAD`` (inputs to float, forward, the target's horizon
slice), the criterion, ``loss.item()``, backward, Adam step. The batch fetch is not timed (nor is
ours); the learning-rate decay, validation and test run once per epoch there, not per step.

The official code has no CPU switch: ``Exp_Basic`` places the model with ``.to(args.rank)``
(``.cuda()`` if that fails) and ``_process_one_batch_DPAD`` each batch with ``.to(args.rank)``,
the rank being a GPU index. Here ``args.rank`` is ``"cpu"``, so both run on the CPU unpatched.
Nothing is written: ``train()`` and ``test()``, which make the checkpoint and result folders, are
not called. Prints one JSON line: the fields of ``tslib_step.py``, with the official names of the
network's sizes (``enc_hidden``, ``K_IMP``, ``levels``) in place of ``d_model``.

Needs only torch and the checkout's own imports (numpy, pandas, scikit-learn, matplotlib); it
imports nothing of ``forecast``.
"""

import json
import os
import sys
import time

from tslib_step import script_parser, step_figures  # beside this file


def main(argv: list[str]) -> dict:
    threads, warmup, iters = int(argv[0]), int(argv[1]), int(argv[2])
    sys.path.insert(0, os.getcwd())
    import torch

    torch.set_num_threads(threads)
    args = script_parser("singlecard.py").parse_args(argv[3:])
    torch.manual_seed(79)  # singlecard.py's seed
    args.rank = "cpu"
    from experiments.exp_ETT import Exp_ETT

    exp = Exp_ETT(args)
    model = exp.model
    loader = exp._get_data(flag="train")  # drop_last: every batch is full
    if not len(loader):
        raise SystemExit(f"no full training batch of {args.batch_size} windows: a smaller --batch_size")
    optimizer, criterion = exp._select_optimizer(), exp._select_criterion(args.loss)
    model.train()
    wall, cpu = [], []
    batches = iter(loader)
    while len(wall) < warmup + iters:
        try:
            batch_x, batch_y = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        pred, true = exp._process_one_batch_DPAD(batch_x, batch_y)
        loss = criterion(pred, true)
        loss.item()
        loss.backward()
        optimizer.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        **step_figures(torch, wall, cpu, warmup, model, loader, args.batch_size),
        "model": type(model).__name__, "dropout": args.dropout, "enc_hidden": args.enc_hidden,
        "K_IMP": args.K_IMP, "levels": args.levels, "learning_rate": args.lr, "loss": args.loss,
        "loss_last": float(loss.item()),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
