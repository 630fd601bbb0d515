"""The summary table of ``docs/reproduction.md``, counted from the page's own rows.

    python scripts/reproduction_summary.py            # print the table
    python scripts/reproduction_summary.py --write    # rewrite it in the page

Each model section's rows are counted by their status column: ``off by more than 5 %`` and
``within 5 %`` are measured cells (outside or within 5 % of the published MSE), ``training now`` and
``queued`` cells wait in the training queue, ``not run`` cells have not been run. A test checks that
the page's table equals this count, so a row edited without the summary fails the suite.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reproduction.md"
MODELS = ("Autoformer", "ETSformer", "D-PAD", "KARMA", "DLinear")
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


def counts(page: str) -> dict[str, dict[str, int]]:
    """``{model: {cells, measured, within, outside, waiting, not_run}}`` from the model sections."""
    out = {}
    for section in re.split(r"\n## ", page)[1:]:
        name, _, body = section.partition("\n")
        if name.strip() not in MODELS:
            continue
        rows = [line for line in body.splitlines()
                if line.startswith("| ") and not line.startswith("| dataset") and not line.startswith("|---")]
        found = [status(row) for row in rows]
        c = {key: found.count(key) for key in ("within", "outside", "waiting", "not_run")}
        out[name.strip()] = {"cells": len(rows), "measured": c["within"] + c["outside"], **c}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {PAGE}")
    args = parser.parse_args()
    page = PAGE.read_text()
    fresh = table(page)
    if args.write:
        PAGE.write_text(page.replace(current(page), fresh))
    print(fresh)


if __name__ == "__main__":
    main()
