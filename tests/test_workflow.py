"""The Snakemake workflow as users run it: `snakemake ...` from the repository root (a fresh copy of it), with
the README's own commands, the paper config's DAG without data, tiny real runs, and reruns that follow the
settings."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, job_counts, snakemake_cli, tiny_config, tiny_ssmtl_config


def write_config(root, name: str, config: dict) -> str:
    """Write ``config`` as ``config/<name>.yaml`` of the checkout ``root``; returns the path relative to it."""
    path = root / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return f"config/{name}.yaml"


def results_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "results").rglob("*") if p.is_file()) \
        if (root / "results").exists() else []


def readme_commands(section: str) -> list[list[str]]:
    """The `snakemake` command lines of the first code block under the README heading ``section``."""
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1]
    block = body.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.startswith("snakemake ")]


# ------------------------------------------------------------------------------------ the README's commands

def test_readme_paper_commands_work_from_the_root(checkout):
    """Each command of "Running the papers' configuration", as written, from the root (dry runs; --report
    needs finished results, so it must fail only for the missing outputs, not for the config)."""
    commands = readme_commands("Running the papers' configuration")
    assert len(commands) == 4 and all("config/paper.yaml" in c for c in commands)
    for argv in commands:
        report = "--report" in argv
        code, out = snakemake_cli(*argv[1:], *([] if report else ["-n"]), cwd=checkout, timeout=600)
        assert "ConfigError" not in out and "is extended by additional config" not in out, (argv, out[-3000:])
        if report:
            assert code != 0 and "marked for report but does not exist" in out, out[-3000:]
        else:
            assert code == 0, (argv, out[-3000:])
            assert "pretrain" in out and "synthesize_dataset" not in out
        if "hssl_table2.md" in argv[1]:
            assert [r for r in job_counts(out) if r.startswith("report_")] == ["report_hssl_table2"]
    assert results_files(checkout) == []


def test_paper_config_has_no_demo_leak(checkout):
    """With `--configfile config/paper.yaml` the plan every job reads is exactly paper.yaml's (its defaults
    written out): not one demo key (steps_per_epoch: 4, 32 px, synthetic: true) survives."""
    from medssl.config import load_config
    from medssl.plan import resolved_config

    code, out = snakemake_cli("all", "-n", "--configfile", "config/paper.yaml", cwd=checkout)
    assert code == 0, out[-3000:]
    seen = load_config(checkout / ".snakemake" / "medssl" / "paper" / "plan.yaml")
    assert seen == resolved_config(load_config(checkout / "config" / "paper.yaml"))
    assert seen["synthetic"] is False and seen["data"]["image_size"] == 192
    assert {ds["image_size"] for ds in seen["datasets"].values()} == {192, 256}  # paper B: 256 px
    for study in seen["studies"].values():
        for block in (study, *study["runs"].values()):
            for stage in ("pretrain", "finetune"):
                assert block.get(stage, {}).get("steps_per_epoch") is None
    assert set(seen["datasets"]) == set(yaml.safe_load((checkout / "config" / "paper.yaml").read_text())["datasets"])


def test_demo_is_the_config_without_configfile(checkout):
    """The README's main command (as a dry run) uses the demo, and a `--config` override still applies."""
    code, out = snakemake_cli("--cores", "2", "all", "-n", "--config", "experiment=demo2", cwd=checkout)
    assert code == 0, out[-3000:]
    assert "synthesize_dataset" in out and "results/demo2/tables/hssl_table2.md" in out


def test_nested_config_override_from_the_command_line(checkout):
    """`--config 'data={image_size: 64}'` (a nested value, which snakemake hands over as strings) reaches the
    jobs typed and merged into the config file's other data keys."""
    from medssl.config import load_config

    code, out = snakemake_cli("all", "-n", "--configfile", "config/paper.yaml", "--config", "experiment=paper_64",
                              "data={image_size: 64}", cwd=checkout)
    assert code == 0, out[-3000:]
    seen = load_config(checkout / ".snakemake" / "medssl" / "paper_64" / "plan.yaml")
    assert seen["data"]["image_size"] == 64 and seen["data"]["split"] == {"ratios": [0.7, 0.1, 0.2], "seed": 0}
    assert {ds["image_size"] for ds in seen["datasets"].values()} == {64, 256}  # the 256 px are per dataset


def test_manual_download_instructions_reach_the_console(checkout):
    """A dataset behind a registration stops its fetch job; the console (not only the job's log) says where
    to register, what to download and the exact folder to put it in."""
    config = tiny_config(datasets=("acdc", "msd_heart"))
    config["synthetic"] = False
    path = write_config(checkout, "manual", config)
    code, out = snakemake_cli("resources/ready/acdc.json", "--cores", "1", "--configfile", path, cwd=checkout)
    assert code != 0
    assert "needs a manual download" in out and f"{checkout}/resources/raw/acdc" in out, out[-3000:]


def test_lint_is_clean(checkout):
    code, out = snakemake_cli("--lint", cwd=checkout)
    assert code == 0, out
    assert "Lints for" not in out, out


def test_parsing_writes_nothing_under_results(checkout):
    """-n, --lint and --rulegraph only read: no results/<exp>/config.yaml or anything else appears."""
    for args in (["all", "-n"], ["--lint"], ["--rulegraph"], ["all", "-n", "--configfile", "config/paper.yaml"]):
        code, out = snakemake_cli(*args, cwd=checkout)
        assert code == 0, (args, out[-2000:])
        assert results_files(checkout) == [], args


def test_invalid_config_fails_naming_the_key(checkout):
    config = tiny_config()
    config["data"]["image_sise"] = 32
    code, out = snakemake_cli("-n", "--configfile", write_config(checkout, "bad", config), cwd=checkout)
    assert code != 0 and "image_sise" in out


# ------------------------------------------------------------------------------------------- real runs

@pytest.mark.slow
def test_tiny_end_to_end_and_reruns_follow_the_settings(checkout):
    """Phantoms -> slices -> splits -> pretrain (simclr, hssl) -> finetune (tfs, simclr, hssl) -> evaluate ->
    Table 2 and the HTML report, for real, from the root; then a changed setting reruns exactly the jobs
    that read it, and their dependents."""
    path = write_config(checkout, "tiny", tiny_config())
    code, out = snakemake_cli("all", "--cores", "2", "--configfile", path, cwd=checkout)
    assert code == 0, out[-4000:]
    # The run ends by saying where its tables are, with the headline table's grid.
    assert "medssl: 3 of 3 tables and figures are in place:" in out and "results/tiny/tables/hssl_table2.md" in out
    assert "| Task | Anno. | TFS | SimCLR | HSSL |" in out.split("Headline", 1)[1]
    res = checkout / "results" / "tiny"
    # Jobs ran as forks of one job server (medssl.server) once it listened; it is gone with its socket.
    logs = [p.read_text() for p in (res / "logs").rglob("*.log")]
    assert any("ran as a fork of the job server" in text for text in logs)
    listening = re.search(r"listening on (\S+)", (res / "logs" / "server" / "job_server.log").read_text())
    assert listening and not Path(listening.group(1)).parent.exists()
    for dataset in ("msd_heart", "msd_spleen"):
        split = json.loads((res / "splits" / f"{dataset}.json").read_text())
        train, val, test = (set(split["patients"][k]) for k in ("train", "val", "test"))
        assert train and test and not (train & val) and not (train & test) and not (val & test)
    for run in ("tfs", "simclr", "hssl"):
        metrics = json.loads((res / "hssl" / "metrics" / run / "msd_heart" / "100" / "seed0.json").read_text())
        assert metrics["synthetic"] is True and metrics["run"] == run
        assert set(metrics["slice_pooled"]["dice"]) == {"left atrium"}
    assert (res / "hssl" / "pretrain" / "hssl" / "all" / "model.pt").exists()
    assert not (res / "hssl" / "pretrain" / "tfs").exists()
    table = (res / "tables" / "hssl_table2.md").read_text()
    assert "synthetic" in table.lower() and all(name in table for name in ("TFS", "SimCLR", "HSSL"))
    # The job's log starts with the settings it ran with; the run's config is recorded once it succeeded; a job
    # handed other settings than those it was scheduled with refuses to run.
    log = (res / "logs" / "finetune" / "hssl" / "hssl" / "msd_heart" / "100" / "seed0.log").read_text()
    assert re.search(r"settings [0-9a-f]{16}: \{.*\"lr\": 0\.001", log), log[:2000]
    assert yaml.safe_load((res / "config.yaml").read_text())["experiment"] == "tiny"
    resolved = yaml.safe_load((res / "plan.yaml").read_text())  # every default applied, for people to read
    assert resolved["studies"]["hssl"]["runs"]["hssl"]["finetune"]["lr"] == 0.001
    proc = subprocess.run([str(Path(sys.executable).with_name("medssl")), "split", "--config", ".snakemake/medssl/tiny/plan.yaml", "--settings",
                           "0123456789abcdef", "--dataset", "msd_heart", "--store", str(res / "data" / "msd_heart"),
                           "--out", str(res / "splits" / "msd_heart.json")], cwd=checkout, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "not those the workflow scheduled it with" in proc.stderr, proc.stderr

    # The README's report command, from the root: the table is in it with its caption.
    code, out = snakemake_cli("--configfile", path, "--report", "report.html", cwd=checkout)
    assert code == 0, out[-3000:]
    html = (checkout / "report.html").read_text()
    assert "hssl_table2.html" in html and "synthetic phantom twins" in html and "{% if" not in html
    table_html = (res / "tables" / "hssl_table2.html").read_text()
    assert "<table>" in table_html and "<th>HSSL</th>" in table_html and "Synthetic data" in table_html

    # Nothing changed: nothing to do.
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    # The recorded plan is a config with the same settings: run from it, nothing to do either.
    code, out = snakemake_cli("all", "-n", "--configfile", "results/tiny/plan.yaml", cwd=checkout)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]

    # A finetuning lr reruns the study's finetunes, their evaluations and the table; not data or pretraining.
    recorded = (res / "config.yaml").read_text()
    config = tiny_config()
    config["studies"]["hssl"]["finetune"]["lr"] = 5e-4
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert code == 0, out[-3000:]
    assert job_counts(out) == {"finetune": 3, "report_hssl_table2": 1, "all": 1}, out[-3000:]
    assert (res / "config.yaml").read_text() == recorded  # a dry run claims nothing

    # A run's own finetune settings rerun that run only.
    config = tiny_config()
    config["studies"]["hssl"]["runs"]["tfs"]["finetune"] = {"lr": 5e-4}
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert job_counts(out) == {"finetune": 1, "report_hssl_table2": 1, "all": 1}, out[-3000:]
    assert "logs/finetune/hssl/tfs/msd_heart" in out and "logs/finetune/hssl/hssl/msd_heart" not in out

    # The split seed reruns the splits and everything that reads them, but not the phantoms or the slicing.
    config = tiny_config()
    config["data"]["split"]["seed"] = 1
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    counts = job_counts(out)
    assert counts["split_dataset"] == 2 and counts["finetune"] == 3 and counts["pretrain"] == 2, out[-3000:]
    assert "synthesize_dataset" not in counts and "slice_dataset" not in counts

    # Where jobs run is no setting of theirs: device and threads rerun nothing.
    config = tiny_config()
    config["device"], config["threads"] = "cpu", 2
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_tiny_ssmtl_end_to_end(checkout):
    """Paper B on the MM-WHS CT twin: SSMTL (U-Net) and SSMTL+ (ResNet50-FCN) pretrain, finetune on the
    scans x slices budget, evaluate (IoU), and Tables 2 and 4 are built."""
    path = write_config(checkout, "tiny_ssmtl", tiny_ssmtl_config())
    code, out = snakemake_cli("all", "--cores", "2", "--configfile", path, cwd=checkout)
    assert code == 0, out[-4000:]
    res = checkout / "results" / "tiny_ssmtl"
    split = json.loads((res / "splits" / "mmwhs_ct.json").read_text())
    assert len({case for case, _ in split["label_subsets"]["scans"]}) == 2
    for run in ("unet_ssmtl", "fcn_ssmtl_plus"):
        metrics = json.loads((res / "ssmtl_ct" / "metrics" / run / "mmwhs_ct" / "scans" / "seed0.json").read_text())
        assert set(metrics["slice_pooled"]["iou"]) == {"LV", "RV", "LA", "RA"}
        log = (res / "ssmtl_ct" / "pretrain" / run / "all" / "log.csv").read_text().splitlines()
        assert "loss" in log[0] and len(log) == 2
    assert "sim" in (res / "ssmtl_ct" / "pretrain" / "fcn_ssmtl_plus" / "all" / "log.csv").read_text().splitlines()[0]
    for table in ("ssmtl_table2", "ssmtl_table4"):
        assert "synthetic" in (res / "tables" / f"{table}.md").read_text().lower()


# ------------------------------------------------------------------------------------------ the demo DAG

def test_one_table_schedules_only_its_ancestors(checkout):
    """`snakemake <table>` runs only what that table needs (demo config, dry run)."""
    code, out = snakemake_cli("results/demo/tables/hssl_table4.md", "-n", cwd=checkout)
    assert code == 0, out
    counts = job_counts(out)
    # Table 4: five loss variants at 5 % on tasks 1 and 5, plus the TFS baseline of the paired test.
    assert counts["finetune"] == 6 * 2 and "evaluate" not in counts
    assert counts["pretrain"] == 5  # hssl_rec, simclr, hssl_img_rec, hssl_img_rec_task, hssl (pool "all")
    assert counts["synthesize_dataset"] == 8  # the multi-domain pool: every paper-A dataset, no MM-WHS
    assert [r for r in counts if r.startswith("report_")] == ["report_hssl_table4"]
    assert "tsne_features" not in counts


def test_demo_all_schedules_every_table_and_figure(checkout):
    """`all` on the demo config makes every table and figure of both papers (dry run)."""
    from medssl.reports.targets import TARGETS

    code, out = snakemake_cli("all", "-n", cwd=checkout)
    assert code == 0, out
    counts = job_counts(out)
    assert sorted(r for r in counts if r.startswith("report_")) == sorted(f"report_{t}" for t in TARGETS)
    for target, info in TARGETS.items():
        for path in info.outputs:
            assert f"results/demo/{path}" in out, path


def shell_commands(text: str) -> list[str]:
    """The shell command strings of a .smk file (the string lines that follow each `shell:`)."""
    commands, current = [], None
    for line in text.splitlines():
        if line.strip() == "shell:":
            current = []
            commands.append(current)
        elif current is not None and re.match(r'^\s+".*"$', line):
            current.append(line.strip()[1:-1])
        else:
            current = None
    return [" ".join(c) for c in commands]


def test_config_strings_are_quoted_in_every_shell_command():
    """Every value a rule passes to the shell is quoted ({...:q}); nothing from a config runs as a command."""
    commands = [c for smk in (REPO / "workflow" / "rules").glob("*.smk") for c in shell_commands(smk.read_text())]
    assert len(commands) >= 9
    for cmd in commands:
        for field in re.findall(r"\{([^}]*)\}", cmd):
            assert field.endswith(":q"), (cmd, field)


def test_rules_are_snakefmt_clean():
    """The Snakefile and rules follow snakefmt, the Snakemake catalog's formatter."""
    exe = Path(sys.executable).with_name("snakefmt")
    proc = subprocess.run([str(exe), "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
