"""The documentation: the site builds strictly, no link or anchor is broken, the README stays a
quick start, the pages speak to users (not of the project's history or of one machine's folders),
and the examples run on files that ship."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import sys
from urllib.parse import unquote

import pytest

from tests.helpers import ETTH1, REPO

DOCS = REPO / "docs"
SAMPLE = REPO / "data" / "sample" / "load.csv"


def pages() -> dict[str, str]:
    """README.md and every page of the site, by path relative to the repository (posix)."""
    found = {"README.md": (REPO / "README.md").read_text()}
    for path in sorted(DOCS.rglob("*.md")):
        found[path.relative_to(REPO).as_posix()] = path.read_text()
    return found


# ------------------------------------------------------------------ the link checker

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose_lines(text: str):
    """The lines outside fenced code blocks, with inline code removed (links there are text)."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and the site (``pymdownx.slugs.slugify(case="lower")`` in
    mkdocs.yml) make it: lower case, link targets and punctuation dropped, one '-' per space."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings. A repeated heading gets a suffix that GitHub and MkDocs
    spell differently (-1 / _1), so only its first occurrence can be linked."""
    found = set()
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.add(slug(match.group(2)))
    return found


def broken_links(pages: dict[str, str], is_file, site: str = "docs") -> list[str]:
    """``"<page>: <target>"`` for every relative link that points at no file, or at an anchor its
    Markdown target does not have. ``pages`` maps posix paths to Markdown; ``is_file(path)`` says
    whether another file exists. A page of the site (under ``site``) may only link inside it,
    since MkDocs cannot serve the rest of the repository."""
    broken = []
    for page, text in pages.items():
        for line in prose_lines(text):
            for target in LINK.findall(line):
                if not target or SCHEME.match(target):
                    continue
                path, _, anchor = unquote(target).partition("#")
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path)) if path else page
                outside_site = page.startswith(site + "/") and not resolved.startswith(site + "/")
                exists = resolved in pages or is_file(resolved)
                if outside_site or not exists:
                    broken.append(f"{page}: {target}")
                elif anchor and (resolved not in pages or anchor not in anchors(pages[resolved])):
                    broken.append(f"{page}: {target}")
    return broken


def test_link_checker_reports_each_kind_of_broken_link():
    example = {
        "README.md": "\n".join([
            "# Quick start: two commands",
            "[ok](docs/a.md) [ok](docs/a.md#models-and-data) [ok](#quick-start-two-commands) ![ok](docs/pic.png)",
            "[missing file](docs/b.md) [missing anchor](docs/a.md#nowhere) [missing here](#quick-start)",
            "[external](https://example.org/x.md) `[in code](docs/none.md)`",
            "```bash",
            "[in a fence](docs/none.md)",
            "```",
        ]),
        "docs/a.md": "## Models and data\n\n[up](../README.md) [ok](../docs/a.md) [ok](a.md#models-and-data)\n",
    }
    found = broken_links(example, is_file=lambda path: path == "docs/pic.png")
    assert found == [
        "README.md: docs/b.md",
        "README.md: docs/a.md#nowhere",
        "README.md: #quick-start",
        "docs/a.md: ../README.md",  # exists, but outside the site
    ]


def test_slug_rule_is_the_sites():
    pymdownx_slugs = pytest.importorskip("pymdownx.slugs")
    site_slug = pymdownx_slugs.slugify(case="lower")
    headings = [HEADING.match(line).group(2) for text in pages().values() for line in prose_lines(text)
                if HEADING.match(line)]
    assert len(headings) > 50
    for heading in headings:
        rendered = re.sub(r"`([^`]*)`", r"\1", heading)  # what the toc extension slugifies: the text
        assert slug(heading) == site_slug(rendered, "-"), heading
    assert "pymdownx.slugs.slugify" in (REPO / "mkdocs.yml").read_text()
    assert slug("Scale-out: GPUs, DDP, clusters") == "scale-out-gpus-ddp-clusters"
    assert slug("What `model=` does") == "what-model-does"


def test_no_broken_link_in_the_readme_or_the_docs():
    assert broken_links(pages(), is_file=lambda path: (REPO / path).is_file()) == []


# ------------------------------------------------------------------ the site

def test_mkdocs_builds_strictly_with_the_api_page(tmp_path):
    """--strict turns every warning into a failure: a page missing from the nav, a broken link or
    anchor, a docstring reference mkdocstrings cannot resolve."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("forecast.pipelines.train.run", "forecast.data.datamodule.ForecastDataModule",
                 "forecast.module.ForecastModule", "forecast.serving", "forecast.metrics"):
        assert f'id="{name}"' in api, f"{name} is not on the API page"
    for page in ("getting-started", "data", "models/karma", "mlflow", "adding-a-model"):
        assert (tmp_path / "site" / page / "index.html").is_file()


def test_readme_is_a_quick_start():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details to docs/"


# ------------------------------------------------------------------ what the pages say

INTERNAL = re.compile(
    r"/work/|/root/|/tmp/scratch"
    r"|\bissues?\s+#?\d+"
    r"|\b(?:this|that|the|a later|an earlier|the previous|the next)\s+session\b"
    r"|\bstop\s+#?\d+\b|\bthis stop\b"
    r"|\bCI machines?\b",
    re.IGNORECASE,
)


def internal_phrases(text: str) -> list[str]:
    return [match.group(0) for match in INTERNAL.finditer(text)]


def test_internal_phrase_check_catches_history_and_local_paths():
    assert internal_phrases("as issue 3's measurement showed, in this session, on this project's CI machines") == \
        ["issue 3", "this session", "CI machines"]
    assert internal_phrases("data in /work/shared/data or /root/out; stopped at stop 4") == ["/work/", "/root/", "stop 4"]
    assert internal_phrases("see statsmodels#9538; a SQL session; stop after 5 epochs; issues/9538") == []


def test_pages_speak_to_users_not_of_the_projects_history():
    found = {page: internal_phrases(text) for page, text in pages().items()}
    assert {page: hits for page, hits in found.items() if hits} == {}


# ------------------------------------------------------------------ the examples

def test_examples_read_files_that_ship():
    paths = {path for text in pages().values() for path in re.findall(r"\bdata\.path=([^\s`'\")]+)", text)
             if not re.search(r"[<…$]|\.\.\.", path)}  # placeholders: data.path=<file>, data.path=...
    assert "data/sample/load.csv" in paths
    assert sorted(path for path in paths if not (REPO / path).is_file()) == []


def test_the_sample_csv_is_an_unmodified_part_of_etth1():
    """CC BY-ND 4.0 lets ETTh1 be shared in whole or in part, unmodified: the sample is its header and
    a run of consecutive lines, byte for byte."""
    original = ETTH1.read_bytes().splitlines(keepends=True)
    sample = SAMPLE.read_bytes().splitlines(keepends=True)
    assert sample[0] == original[0] and len(sample) == 721
    start = original.index(sample[1])
    assert sample[1:] == original[start : start + len(sample) - 1]
    assert start + 1 == 16058  # the line number data/README.md gives (1-based, header = line 1)


def test_the_readmes_own_csv_example_runs(tmp_path):
    """The README's command, as written, with two batches of fit and test and no MLflow."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^(python train\.py data=csv (?:[^\n]*\\\n)*[^\n]*)", readme, re.M)
    assert match, "the README has no `python train.py data=csv ...` example"
    args = match.group(1).replace("\\\n", " ").split()[2:]
    proc = subprocess.run([sys.executable, "train.py", *args, "trainer=debug", "logger=none",
                           f"hydra.run.dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false"],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"test/mse\s+\d", proc.stdout + proc.stderr)
    assert "data.target=HUFL" in args and (tmp_path / "run" / "checkpoints").is_dir()
