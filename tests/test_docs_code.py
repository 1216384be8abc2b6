"""The code in README.md, config/README.md and docs/ runs (issue 25): every bash, python and yaml block either
runs here as written (in a copy of the repository, from its root, with a trained model file where a block
reads one), or says in a comment just above it where it runs (`<!-- run by <file>: how -->`) or why it cannot
(`<!-- not run: why -->`). The blocks marked "run by tests/test_docs_code.py" are checked by the tests below
that name them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO

FILES = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--(?P<mark>[^\n]*?)-->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)\n```", re.S)
CODE = ("bash", "python", "yaml")
HERE = "run by tests/test_docs_code.py"


def blocks():
    """(file, language, body, mark) of every fenced block."""
    for path in FILES:
        for m in BLOCK.finditer(path.read_text()):
            yield path, m.group("lang"), m.group("body"), (m.group("mark") or "").strip()


def marked(text: str, file: str) -> str:
    """The body of the block of ``file`` whose mark starts with ``text``."""
    found = [body for path, _, body, mark in blocks() if path.name == file and mark.startswith(text)]
    assert len(found) == 1, (file, text, len(found))
    return found[0]


def test_every_block_runs_or_says_why():
    seen = 0
    for path, lang, body, mark in blocks():
        if lang not in CODE:
            continue
        seen += 1
        if not mark:
            assert lang in ("bash", "python"), f"{path.name}: an unmarked {lang} block (only bash and python run)"
            continue
        assert re.match(r"^(not run|run by \S+)(?: [^:]*)?: \S.{10,}", mark), f"{path.name}: mark {mark!r}"
        if mark.startswith("run by "):
            where = mark.split()[2].rstrip(":")
            assert (REPO / where).exists(), f"{path.name}: {where} does not exist"
    assert seen >= 15


def _shell_lines(body: str) -> list[str]:
    """The commands of a bash block: lines joined at trailing backslashes, comments kept (bash ignores them)."""
    return [c.strip() for c in body.replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("#")]


def _model_files(root: Path) -> None:
    """The trained model files the docs' blocks read: a full-width HSSL pretraining of the paper config."""
    from medssl.models import build
    from medssl.train.checkpoint import save_model

    torch.manual_seed(0)
    net = build("hssl_net", 1)
    path = root / "results" / "paper" / "hssl" / "pretrain" / "hssl" / "all" / "model.pt"
    save_model(path, net.state_dict(), kind="pretrain", arch="hssl_net", out_channels=1, width=1.0, study="hssl",
               run="hssl", pool="all", epochs=1000)


@pytest.mark.parametrize("path", [p for p in FILES if any(
    lang in ("bash", "python") and not mark for q, lang, _, mark in blocks() if q == p)], ids=lambda p: p.name)
def test_unmarked_blocks_run_as_written(path, checkout):
    """Every unmarked bash and python block of a page, in order, from the root of a copy of the repository."""
    _model_files(checkout)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for q, lang, body, mark in blocks():
        if q != path or mark or lang not in ("bash", "python"):
            continue
        commands = _shell_lines(body) if lang == "bash" else [body]
        for command in commands:
            argv = ["bash", "-c", command] if lang == "bash" else [sys.executable, "-c", command]
            proc = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{path.name}: {command}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            ran += 1
    assert ran


def test_the_own_data_config_is_a_config(tmp_path):
    from medssl import config as mcfg

    config = yaml.safe_load(marked(HERE + ": validated as a config", "own-data.md"))
    resolved = mcfg.resolve(mcfg.validate(config))
    assert resolved["studies"]["kidney"]["runs"]["hssl"]["finetune"]["steps"] == 200


def test_the_dataset_declaration_of_the_config_guide_is_valid():
    from medssl import config as mcfg

    block = yaml.safe_load(marked(HERE + ": validated as the datasets", "README.md"))
    mcfg.resolve(mcfg.validate({"experiment": "x", "data": {"image_size": 32}, **block}))


def test_the_slurm_lines_of_the_readme_are_the_profiles():
    shown = yaml.safe_load(marked(HERE + ": the lines of slurm/config.yaml", "README.md"))
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())

    def within(a, b, where=""):
        for key, value in a.items():
            assert key in b, f"{where}{key} is not in slurm/config.yaml"
            if isinstance(value, dict):
                within(value, b[key], f"{where}{key}/")
            else:
                assert b[key] == value, f"{where}{key}: {value!r} in the README, {b[key]!r} in slurm/config.yaml"

    within(shown, profile)
    raw = (REPO / "slurm" / "config.yaml").read_text()
    for line in marked(HERE + ": the lines of slurm/config.yaml", "README.md").splitlines():
        if "<- EDIT" in line:
            assert line.strip() in {x.strip() for x in raw.splitlines()}, line


def test_the_rule_graph_of_the_architecture_page_is_the_workflows(checkout):
    body = marked(HERE + " without `dot`", "architecture.md")
    first = _shell_lines(body)[0].split("|")[0].split()
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), *first[1:]], cwd=checkout,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = set(re.findall(r'label = "(\w+)"', proc.stdout))
    svg = set(re.findall(r">(\w+)</text>", (REPO / "workflow" / "report" / "rulegraph.svg").read_text()))
    assert rules and rules == svg, (rules, svg)
