"""The documentation: the configuration reference is the schema's (generated, never stale), every relative link
of README.md and docs/ leads somewhere, and the README stays a short front page that links every docs/ page."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

DOCS = REPO / "docs"
REGENERATE = "python -m medssl.reference > docs/configuration.md"
LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def without_code_blocks(text: str) -> str:
    """``text`` less its fenced code blocks (their lines become empty: line numbers stay)."""
    out, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker and (fence is None or marker.group(1) == fence):
            fence = None if fence else marker.group(1)
            out.append("")
            continue
        out.append("" if fence else line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in without_code_blocks(path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", path.read_text()))
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(without_code_blocks(path.read_text()))


def relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)  # not http:, https:, mailto:, ...


def schema_keys(node) -> set[str]:
    """The name of every key a config may hold, at any level (every ``properties`` entry of the schema)."""
    found: set[str] = set()
    if isinstance(node, dict):
        found |= set(node.get("properties") or {})
        for value in node.values():
            found |= schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= schema_keys(value)
    return found


# ------------------------------------------------------------------------------ the configuration reference

def test_configuration_reference_is_the_schemas():
    """docs/configuration.md is exactly what the generator renders from the schema today."""
    from medssl.reference import configuration_reference

    path = DOCS / "configuration.md"
    assert path.is_file(), f"docs/configuration.md is missing: generate it with `{REGENERATE}`"
    assert path.read_text() == configuration_reference(), (
        f"docs/configuration.md is out of date with config/schemas/config.schema.yaml: regenerate it with "
        f"`{REGENERATE}` (from the repository root) and commit the result")


def test_configuration_reference_names_every_schema_key():
    """Every key the schema allows has a row (its name a part of a row's dotted key), and every
    paper-dependent default is stated."""
    from medssl.config import load_schema
    from medssl.reference import configuration_reference

    text = configuration_reference()
    named = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split(" | ", 1)[0]
            for code in re.findall(r"`([^`]+)`", first):
                named |= set(code.split("."))
    schema = load_schema()
    missing = sorted(schema_keys(schema) - named)
    assert not missing, f"schema keys without a row in the reference: {missing}"
    study = schema["properties"]["studies"]["additionalProperties"]["properties"]
    for key, spec in study.items():
        for paper, value in (spec.get("x-paper-default") or {}).items():
            row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
            assert f"paper `{paper}`: `{value}`" in row, row


def test_reference_module_needs_no_torch():
    """medssl.reference imports medssl.config alone, and importing it loads no torch."""
    tree = ast.parse((REPO / "src" / "medssl" / "reference.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("medssl")} == {"medssl.config"}, imported
    code = "import sys, medssl.reference; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------------------------ links

@pytest.mark.parametrize("path", [REPO / "README.md", REPO / "config" / "README.md", *pages()],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_somewhere(path):
    """Every relative link (and image) points to a file or folder that exists, and a link to a heading of a
    Markdown file to a heading it has."""
    broken = []
    for target in links(path):
        if not relative(target):
            continue
        file, _, fragment = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading #{fragment} in {dest.relative_to(REPO)})")
    assert not broken, f"{path.relative_to(REPO)}: broken links: {broken}"


# ------------------------------------------------------------------------------------------ the README

def test_readme_is_short_and_links_every_docs_page():
    text = (REPO / "README.md").read_text()
    lines = text.count("\n") + (not text.endswith("\n"))
    assert lines < 250, f"README.md has {lines} lines; move detail into docs/ (goal: under 250)"
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md") if relative(t)}
    unlinked = [p.name for p in pages() if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_docs_pages_start_with_a_title_and_a_summary():
    """Each docs page: '# Title', a blank line, then a one-line summary."""
    assert pages(), "docs/ holds no pages"
    for path in pages():
        head = path.read_text().splitlines()[:3]
        assert len(head) == 3 and head[0].startswith("# ") and not head[1].strip(), (path.name, head)
        assert head[2].strip() and not head[2].startswith(("#", "|", "```", "-", "*")), (path.name, head)


def test_readme_keeps_what_ci_and_the_tests_extract():
    """The headings and commands that .ci/run and tests/test_workflow.py read from the README."""
    text = (REPO / "README.md").read_text()
    for heading in ("## Set-up\n", "## Running the papers' configuration\n", "## Running on a SLURM cluster\n"):
        assert heading in text, heading
    assert ('```bash\npython3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && '
            'snakemake --cores 2 all\n```') in text
    assert ('```bash\npython3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[dev]" && '
            'pytest -q\n```') in text
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]" && pytest -q' in ci
