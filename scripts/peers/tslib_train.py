"""Train and test one Time-Series-Library (thuml/Time-Series-Library, "TSLib") run at a chosen seed.

Run by ``scripts/benchmark.py mode=peer_accuracy`` with the reference's own interpreter, from the
root of the checkout (TSLib finds its models in ``./models`` and writes its ``checkpoints/``,
``results/`` and ``test_results/`` there, as for its users):

    python <repo>/scripts/peers/tslib_train.py CHECKOUT SEED <TSLib run.py arguments>

It executes the checkout's own ``run.py`` as ``__main__`` (its parser, experiment, training loop,
early stopping and test, as its users run them), with one change made in memory: the line
``fix_seed = 2021`` that seeds ``random``, NumPy and torch reads ``fix_seed = SEED``, so that one
setting can be trained at several seeds as ours is. No file of the checkout is changed or copied.
TSLib prints the test MSE and MAE (``mse:…, mae:…``) as its last line; the harness reads it.

Needs only torch and the checkout's own requirements; it imports nothing of ``forecast``.
"""

import re
import sys

SEED_LINE = re.compile(r"^(?P<indent>[ \t]*)fix_seed = \d+[ \t]*$", re.MULTILINE)


def seeded_source(source: str, seed: int, script: str = "run.py") -> str:
    """``source`` with its one ``fix_seed = <n>`` line set to ``seed``; an error naming the script
    when it has none or several (a TSLib that seeds differently needs this runner updated)."""
    found = SEED_LINE.findall(source)
    if len(found) != 1:
        raise SystemExit(f"{script}: expected one line `fix_seed = <number>` (TSLib's run.py at 4e938a1 seeds that "
                         f"way), found {len(found)}. Fix: point peer.tslib at such a checkout, or update "
                         "scripts/peers/tslib_train.py to how this one seeds.")
    return SEED_LINE.sub(lambda m: f"{m.group('indent')}fix_seed = {int(seed)}", source)


def main(argv: list[str]) -> None:
    checkout, seed, arguments = argv[0], int(argv[1]), argv[2:]
    script = f"{checkout.rstrip('/')}/run.py"
    with open(script) as fh:
        source = seeded_source(fh.read(), seed, script)
    sys.path.insert(0, checkout)  # its packages (exp, models, data_provider, …), from any working folder
    sys.argv = [script, *arguments]
    exec(compile(source, script, "exec"), {"__name__": "__main__", "__file__": script})


if __name__ == "__main__":
    main(sys.argv[1:])
