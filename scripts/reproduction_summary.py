"""The summary table of ``docs/reproduction.md``, counted from the page's own rows.

    python scripts/reproduction_summary.py            # print the table
    python scripts/reproduction_summary.py --write    # rewrite it in the page
    python scripts/reproduction_summary.py --check    # compare the rows' measured values with benchmarks/accuracy.csv

Each model section's rows are counted by their status column: ``off by more than 5 %`` and
``within 5 %`` are measured cells (outside or within 5 % of the published MSE), ``training now`` and
``queued`` cells wait in the training queue, ``not run`` cells have not been run. A test checks that
the page's table equals this count, so a row edited without the summary fails the suite.

``--check`` holds every measured cell's first value ("every test window, best checkpoint (fp32)":
``0.449 (-0.1 %; 3 seeds, 0.432-0.462)``) to ``benchmarks/accuracy.csv``: the mean MSE of the live
fp32 every-window rows of that model (no variant), dataset, look-back and horizon, its difference
from the published MSE, the number of seeds and their range. A test runs it, so a row can no
longer drift from the records it reports.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reproduction.md"
ACCURACY = REPO / "benchmarks" / "accuracy.csv"
# the page's model sections, in order, and their model names in accuracy.csv
MODELS = {"Autoformer": "autoformer", "ETSformer": "etsformer", "D-PAD": "dpad", "KARMA": "karma", "DLinear": "dlinear"}
HEADER = ("| model | published cells | measured | within 5 % | outside 5 % | training now or queued | not run |\n"
          "|---|---|---|---|---|---|---|")
KEYS = ("cells", "measured", "within", "outside", "waiting", "not_run")


def status(row: str) -> str:
    """The status of one table row: ``outside``, ``within``, ``waiting`` or ``not_run``."""
    text = row.rstrip().rstrip("|").split(" | ")[-1]
    if "off by more than 5 %" in text:
        return "outside"
    if "within 5 %" in text:
        return "within"
    if "training now" in text or "queued" in text:
        return "waiting"
    if text.strip().startswith("not run"):
        return "not_run"
    raise ValueError(f"a row of {PAGE.name} has no status this script knows: {row[:80]}…")


def model_rows(page: str) -> dict[str, list[str]]:
    """``{model section: its table's rows}`` (the header and rule left out), in page order."""
    out = {}
    for section in re.split(r"\n## ", page)[1:]:
        name, _, body = section.partition("\n")
        if name.strip() in MODELS:
            out[name.strip()] = [line for line in body.splitlines()
                                 if line.startswith("| ") and not line.startswith("| dataset")]
    return out


def counts(page: str) -> dict[str, dict[str, int]]:
    """``{model: {cells, measured, within, outside, waiting, not_run}}`` from the model sections."""
    out = {}
    for name, rows in model_rows(page).items():
        found = [status(row) for row in rows]
        c = {key: found.count(key) for key in ("within", "outside", "waiting", "not_run")}
        out[name] = {"cells": len(rows), "measured": c["within"] + c["outside"], **c}
    return out


def table(page: str) -> str:
    """The summary table (a row per model and ``all``)."""
    per_model = counts(page)
    total = {key: sum(c[key] for c in per_model.values()) for key in KEYS}
    lines = [HEADER] + [f"| {name} | " + " | ".join(str(c[key]) for key in KEYS) + " |"
                        for name, c in {**per_model, "all": total}.items()]
    return "\n".join(lines)


def current(page: str) -> str:
    """The summary table as the page has it."""
    start = page.index("| model | published cells |")
    end = page.index("\n", page.index("| all |", start))
    return page[start:end]


VALUE = re.compile(r"^(?P<mse>\d+\.\d+) \((?P<delta>[+-]\d+\.\d) %; (?:seed (?P<seed>\d+)|(?P<n>\d+) seeds, "
                   r"(?P<lo>\d+\.\d+)-(?P<hi>\d+\.\d+))\)")


def check(page: str, accuracy: list[dict]) -> list[str]:
    """The measured cells whose first value disagrees with ``accuracy`` (rows of accuracy.csv);
    an empty list when every one agrees."""
    import statistics

    from forecast.records import live

    runs = [r for r in live(accuracy) if r["precision"] == "32-true" and r["protocol"] == "every-window"]
    wrong = []
    for name, rows in model_rows(page).items():
        for row in rows:
            if status(row) not in ("within", "outside"):
                continue
            cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
            dataset, window, published, value = cells[0].lower(), cells[1], float(cells[2]), cells[3]
            seq_len, pred_len = (int(x) for x in window.split(" -> "))
            found = VALUE.match(value)
            mine = [r for r in runs if (r["model"], r["dataset"], int(r["seq_len"]), int(r["pred_len"]))
                    == (MODELS[name], dataset, seq_len, pred_len)]
            where = f"{name} {cells[0]} {window}"
            if not found:
                if mine:
                    wrong.append(f"{where}: no measured value in {value!r}, but accuracy.csv has {len(mine)} run(s)")
                continue
            if not mine:
                wrong.append(f"{where}: {value!r} but accuracy.csv has no live fp32 every-window run")
                continue
            mses = [float(r["mse"]) for r in mine]
            mean = statistics.fmean(mses)
            seeds = sorted(int(r["seed"]) for r in mine)
            claims = []
            if abs(float(found["mse"]) - mean) > 0.0005 + 1e-9:
                claims.append(f"mean {mean:.4f}")
            if abs(float(found["delta"]) - (mean / published - 1) * 100) > 0.051:
                claims.append(f"Δ {(mean / published - 1) * 100:+.2f} %")
            if found["seed"] and seeds != [int(found["seed"])]:
                claims.append(f"seeds {seeds}")
            if found["n"] and (int(found["n"]) != len(seeds) or abs(float(found["lo"]) - min(mses)) > 0.0005 + 1e-9
                               or abs(float(found["hi"]) - max(mses)) > 0.0005 + 1e-9):
                claims.append(f"{len(seeds)} seeds, {min(mses):.4f}-{max(mses):.4f}")
            if claims:
                wrong.append(f"{where}: the page says {found.group(0)}; accuracy.csv: {', '.join(claims)}")
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {PAGE}")
    parser.add_argument("--check", action="store_true", help="compare the measured cells with benchmarks/accuracy.csv")
    args = parser.parse_args()
    page = PAGE.read_text()
    if args.check:
        import sys

        sys.path.insert(0, str(REPO))
        from forecast.records import read_csv

        wrong = check(page, read_csv(ACCURACY))
        print("\n".join(wrong) or "every measured cell agrees with benchmarks/accuracy.csv")
        raise SystemExit(1 if wrong else 0)
    fresh = table(page)
    if args.write:
        PAGE.write_text(page.replace(current(page), fresh))
    print(fresh)


if __name__ == "__main__":
    main()
