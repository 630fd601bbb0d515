"""Project-wide rules that are easy to break without noticing."""

import hashlib
import re
import shutil

from forecast.records import render_readme
from tests.helpers import ETTH1, REPO


def test_lightning_is_imported_through_one_namespace():
    """`lightning.pytorch` and `pytorch_lightning` classes do not mix: only the latter is used."""
    pattern = re.compile(r"^\s*(from|import)\s+lightning(\.|\s|$)", re.M)
    offenders = [str(p.relative_to(REPO)) for folder in ("forecast", "scripts", "tests") for p in (REPO / folder).rglob("*.py")
                 if pattern.search(p.read_text())]
    offenders += [p.name for p in REPO.glob("*.py") if pattern.search(p.read_text())]
    offenders += [str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("*.yaml") if "lightning.pytorch" in p.read_text()]
    assert offenders == []


def test_bundled_etth1_is_the_unmodified_published_file():
    assert hashlib.sha256(ETTH1.read_bytes()).hexdigest() == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"


def test_benchmarks_readme_is_rendered_from_its_sources(tmp_path):
    """benchmarks/README.md is generated: an edit to accuracy.csv, reference_accuracy.csv, speed.csv
    or notes.md without `python scripts/benchmark.py mode=render` leaves it stale."""
    for name in ("accuracy.csv", "reference_accuracy.csv", "speed.csv", "notes.md"):
        shutil.copy(REPO / "benchmarks" / name, tmp_path / name)
    assert render_readme(tmp_path).read_text() == (REPO / "benchmarks" / "README.md").read_text(), \
        "benchmarks/README.md is stale: run `python scripts/benchmark.py mode=render`"


def test_the_reproduction_summary_counts_the_pages_own_rows():
    """docs/reproduction.md's summary equals the count of its rows' statuses: a row edited
    without `python scripts/reproduction_summary.py --write` fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduction_summary", REPO / "scripts" / "reproduction_summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    page = (REPO / "docs" / "reproduction.md").read_text()
    assert summary.current(page) == summary.table(page), "run `python scripts/reproduction_summary.py --write`"
    assert summary.status("| ETTh1 | 96 -> 96 | 0.449 | 0.449 | – | **within 5 %** |") == "within"
    assert summary.status("| x | y | 1 | 2 | – | **off by more than 5 %**: open; within 5 % on the other protocol |") \
        == "outside"
    assert sum(c["cells"] for c in summary.counts(page).values()) == 104  # every published cell has a row


def test_the_reproduction_rows_report_what_accuracy_csv_records():
    """Every measured cell of docs/reproduction.md (its mean, Δ, seeds and range) equals what the
    live fp32 every-window rows of benchmarks/accuracy.csv give; a value edited by hand that the
    records do not back, or a new run the page does not count, fails here."""
    import importlib.util

    from forecast.records import read_csv

    spec = importlib.util.spec_from_file_location("reproduction_summary", REPO / "scripts" / "reproduction_summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    page = (REPO / "docs" / "reproduction.md").read_text()
    accuracy = read_csv(REPO / "benchmarks" / "accuracy.csv")
    assert summary.check(page, accuracy) == [], "run `python scripts/reproduction_summary.py --check`"
    # the check can fail: a row with the wrong mean, and a run the page does not count
    wrong = page.replace("| 0.386 | 0.385 (-0.2 %; 3 seeds, 0.382-0.389) |", "| 0.386 | 0.395 (+2.3 %; 3 seeds, 0.382-0.389) |")
    assert wrong != page and any("DLinear ETTh1 96 -> 96" in w and "mean 0.3853" in w for w in summary.check(wrong, accuracy))
    extra = [*accuracy, {**next(r for r in accuracy if r["model"] == "karma" and r["dataset"] == "etth1"
                                and r["pred_len"] == "720"), "seed": "2099", "mse": "0.9"}]
    assert any("KARMA ETTh1 96 -> 720" in w and "seeds [2021, 2099]" in w for w in summary.check(page, extra))
