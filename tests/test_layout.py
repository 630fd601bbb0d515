"""Project-wide rules that are easy to break without noticing."""

import hashlib
import re

from tests.conftest import ETTH1, REPO


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
