"""Train and test one Time-Series-Library (thuml/Time-Series-Library, "TSLib") run at a chosen seed,
resumable after an interruption.

Run by ``scripts/benchmark.py mode=peer_accuracy`` with the reference's own interpreter, from the
root of the checkout (TSLib finds its models in ``./models`` and writes its ``checkpoints/``,
``results/`` and ``test_results/`` there, as for its users):

    python <repo>/scripts/peers/tslib_train.py CHECKOUT SEED <TSLib run.py arguments>

It executes the checkout's own ``run.py`` as ``__main__`` (its parser, experiment, training loop,
early stopping and test, as its users run them), with changes made in memory only; no file of the
checkout is changed or copied:

- the line ``fix_seed = 2021`` that seeds ``random``, NumPy and torch reads ``fix_seed = SEED``,
  so that one setting can be trained at several seeds as ours is;
- in ``exp/exp_long_term_forecasting.py``, after each epoch's learning-rate update, everything
  the next epoch depends on (the network, Adam's state and rate, the early-stopping counter and
  best validation loss, and the ``torch``, NumPy and ``random`` generators, which draw the next
  epoch's shuffle and dropout) goes to ``resume.pth`` beside TSLib's ``checkpoint.pth``; and the
  epoch loop starts after the epoch that file holds, when it holds the same seed and arguments. A
  run stopped at any point (a machine's time limit, a kill) and started again with the same
  command goes on from its last finished epoch and ends as the uninterrupted run would, to the
  last digit; the file is deleted when the run ends. A file of another seed or other arguments is
  refused with the fix, never overwritten.

TSLib prints the test MSE and MAE (``mse:…, mae:…``) as its last line; the harness reads it, and
a resumed run's ``Resuming after epoch <k> …`` line for the epochs and seconds before it.

Needs only torch, NumPy and the checkout's own requirements; it imports nothing of ``forecast``.
"""

import importlib.util
import os
import random
import re
import sys
import time

SEED_LINE = re.compile(r"^(?P<indent>[ \t]*)fix_seed = \d+[ \t]*$", re.MULTILINE)
EXPERIMENT = "exp/exp_long_term_forecasting.py"
# the two lines of TSLib 4e938a1's Exp_Long_Term_Forecast.train that resuming hooks into
LOOP = re.compile(r"^(?P<indent>[ \t]*)for epoch in range\(self\.args\.train_epochs\):[ \t]*$", re.MULTILINE)
DECAY = re.compile(r"^(?P<indent>[ \t]*)adjust_learning_rate\(model_optim, epoch \+ 1, self\.args\)[ \t]*$",
                   re.MULTILINE)
STOPPING = ("counter", "best_score", "val_loss_min", "early_stop")  # TSLib's EarlyStopping state


def seeded_source(source: str, seed: int, script: str = "run.py") -> str:
    """``source`` with its one ``fix_seed = <n>`` line set to ``seed``; an error naming the script
    when it has none or several (a TSLib that seeds differently needs this runner updated)."""
    found = SEED_LINE.findall(source)
    if len(found) != 1:
        raise SystemExit(f"{script}: expected one line `fix_seed = <number>` (TSLib's run.py at 4e938a1 seeds that "
                         f"way), found {len(found)}. Fix: point peer.tslib at such a checkout, or update "
                         "scripts/peers/tslib_train.py to how this one seeds.")
    return SEED_LINE.sub(lambda m: f"{m.group('indent')}fix_seed = {int(seed)}", source)


def resumable_source(source: str, script: str = EXPERIMENT) -> str:
    """``source`` (TSLib's long-term experiment) with its epoch loop starting where ``_resume``
    says and ``_resume.save`` after each epoch's learning-rate update; an error naming the script
    when either line is not there once."""
    loops, decays = LOOP.findall(source), DECAY.findall(source)
    if len(loops) != 1 or len(decays) != 1:
        raise SystemExit(f"{script}: expected one line `for epoch in range(self.args.train_epochs):` and one "
                         f"`adjust_learning_rate(model_optim, epoch + 1, self.args)` (TSLib 4e938a1), found "
                         f"{len(loops)} and {len(decays)}. Fix: point peer.tslib at such a checkout, or update "
                         "scripts/peers/tslib_train.py to this one's training loop.")
    source = LOOP.sub(lambda m: f"{m.group('indent')}for epoch in range(_resume.start(self.model, model_optim, "
                                "early_stopping, path, self.args.train_epochs), self.args.train_epochs):", source)
    return DECAY.sub(lambda m: f"{m.group(0)}\n{m.group('indent')}_resume.save(self.model, model_optim, "
                               "early_stopping, path, epoch + 1)", source)


class Resume:
    """The state between epochs of one run (``key``: its seed and arguments), kept in
    ``<checkpoints>/<setting>/resume.pth``."""

    def __init__(self, key: dict):
        self.key, self.files, self.before, self.began = key, [], 0.0, time.time()

    def start(self, model, optimizer, stopping, folder: str, epochs: int) -> int:
        """The first epoch to train: 0, or the one after the epoch a ``resume.pth`` of this run
        holds, with the network, optimizer, early stopping and generators as they were then."""
        import numpy as np
        import torch

        path = os.path.join(folder, "resume.pth")
        self.files.append(path)
        if not os.path.exists(path):
            return 0
        state = torch.load(path, weights_only=False)
        if state["key"] != self.key:
            raise SystemExit(f"{path} holds another run's state (seed {state['key']['seed']}, arguments "
                             f"{' '.join(state['key']['arguments'])}); this run is seed {self.key['seed']}, arguments "
                             f"{' '.join(self.key['arguments'])}. Fix: run that one's command to finish it, or delete "
                             "the file to start this one from its first epoch.")
        best = os.path.join(folder, "checkpoint.pth")
        if state["stopping"]["best_score"] is not None and not os.path.exists(best):
            raise SystemExit(f"{path} resumes a run whose best weights, {best}, are gone. Fix: delete {path} to "
                             "train from the first epoch.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name in STOPPING:
            setattr(stopping, name, state["stopping"][name])
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["random"])
        self.before = state["seconds"]
        print(f"Resuming after epoch {state['epoch']} of {epochs} from {path} ({self.before:.0f} s before)", flush=True)
        return state["epoch"]

    def save(self, model, optimizer, stopping, folder: str, epoch: int) -> None:
        """Keep the state after ``epoch`` epochs (written whole, then renamed over the last one)."""
        import numpy as np
        import torch

        path = os.path.join(folder, "resume.pth")
        state = {"key": self.key, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "stopping": {name: getattr(stopping, name) for name in STOPPING},
                 "torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
                 "seconds": self.before + time.time() - self.began}
        torch.save(state, f"{path}.part")
        os.replace(f"{path}.part", path)

    def finish(self) -> None:
        """The run ended: its state files go."""
        for path in self.files:
            for name in (path, f"{path}.part"):
                if os.path.exists(name):
                    os.remove(name)


def install_experiment(checkout: str, resume: Resume) -> None:
    """Load the checkout's long-term experiment module, made resumable, as the one ``run.py`` imports."""
    path = os.path.join(checkout, EXPERIMENT)
    with open(path) as fh:
        source = resumable_source(fh.read(), path)
    name = "exp.exp_long_term_forecasting"
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    module._resume = resume
    sys.modules[name] = module
    exec(compile(source, path, "exec"), module.__dict__)


def main(argv: list[str]) -> None:
    checkout, seed, arguments = argv[0], int(argv[1]), argv[2:]
    script = f"{checkout.rstrip('/')}/run.py"
    with open(script) as fh:
        source = seeded_source(fh.read(), seed, script)
    sys.path.insert(0, checkout)  # its packages (exp, models, data_provider, …), from any working folder
    resume = Resume({"seed": seed, "arguments": arguments})
    install_experiment(checkout, resume)
    sys.argv = [script, *arguments]
    exec(compile(source, script, "exec"), {"__name__": "__main__", "__file__": script})
    resume.finish()


if __name__ == "__main__":
    main(sys.argv[1:])
