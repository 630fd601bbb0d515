"""Train and test one run of the official D-PAD code (XYBbo5/D-PAD, MIT licence) at a chosen seed.

Run by ``scripts/benchmark.py mode=peer_accuracy peer.dpad=<checkout>`` with the reference's own
interpreter, from a scratch folder (the official code writes its ``--checkpoints`` folder and
``./test_results/`` relative to the working folder, so nothing is written in the checkout):

    python <repo>/scripts/peers/dpad_train.py CHECKOUT SEED <singlecard.py arguments>

It executes the checkout's own ``singlecard.py`` as ``__main__`` (its parser, ``Exp_ETT``'s
training loop, early stopping, learning-rate decay and test, as its users run them) with two
changes made in memory: the two lines ``torch.manual_seed(79)`` and
``torch.cuda.manual_seed_all(79)`` take ``SEED``, so that one setting can be trained at several
seeds as ours is; and, on a machine without CUDA, ``args.rank`` (the GPU index the official code
places the network and every batch on) is ``"cpu"``, the one way it runs on the CPU unpatched.
No file of the checkout is changed or copied. It prints ``Final mean normed mse:…,mae:…`` last;
the harness reads it.

Needs only torch and the checkout's own imports; it imports nothing of ``forecast``.
"""

import re
import sys

SEED_LINES = re.compile(r"^(?P<head>[ \t]*torch\.(?:cuda\.manual_seed_all|manual_seed)\()\d+(?P<tail>\).*)$", re.MULTILINE)
PARSED = re.compile(r"^args = parser\.parse_args\(\)[ \t]*$", re.MULTILINE)


def seeded_source(source: str, seed: int, cpu: bool, script: str = "singlecard.py") -> str:
    """``source`` with its ``torch.manual_seed(<n>)`` and ``torch.cuda.manual_seed_all(<n>)`` lines
    at ``seed`` and, with ``cpu``, ``args.rank = "cpu"`` after its one ``args = parser.parse_args()``;
    an error naming the script when either is not found as D-PAD's 718fc3e has them."""
    seeds = SEED_LINES.findall(source)
    parsed = PARSED.findall(source)
    if len(seeds) != 2 or len(parsed) != 1:
        raise SystemExit(f"{script}: expected the lines `torch.manual_seed(<n>)`, `torch.cuda.manual_seed_all(<n>)` "
                         f"and one `args = parser.parse_args()` (D-PAD's singlecard.py at 718fc3e), found {len(seeds)} "
                         f"seed lines and {len(parsed)} parse lines. Fix: point peer.dpad at such a checkout, or update "
                         "scripts/peers/dpad_train.py to how this one seeds.")
    source = SEED_LINES.sub(lambda m: f"{m.group('head')}{int(seed)}{m.group('tail')}", source)
    if cpu:
        source = PARSED.sub(lambda m: f'{m.group(0)}\nargs.rank = "cpu"', source)
    return source


def main(argv: list[str]) -> None:
    checkout, seed, arguments = argv[0], int(argv[1]), argv[2:]
    script = f"{checkout.rstrip('/')}/singlecard.py"
    import torch

    cpu = not torch.cuda.is_available()
    with open(script) as fh:
        source = seeded_source(fh.read(), seed, cpu, script)
    sys.path.insert(0, checkout)  # its packages (experiments, model, data_process, utils), from any working folder
    sys.argv = [script, *arguments]
    exec(compile(source, script, "exec"), {"__name__": "__main__", "__file__": script})


if __name__ == "__main__":
    main(sys.argv[1:])
