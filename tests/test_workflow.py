"""The Snakemake workflow as users run it: `snakemake ...` from the repository root (a fresh copy of it), with
the README's own commands, the paper config's DAG without data, tiny real runs, and reruns that follow the
settings."""

from __future__ import annotations

import contextlib
import csv
import json
import os
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
    assert len(commands) == 5 and all("config/paper.yaml" in c for c in commands)
    for argv in commands:
        report = "--report" in argv
        code, out = snakemake_cli(*argv[1:], *([] if report or "-n" in argv else ["-n"]), cwd=checkout, timeout=600)
        assert "ConfigError" not in out and "is extended by additional config" not in out, (argv, out[-3000:])
        if report:
            assert code != 0 and "marked for report but does not exist" in out, out[-3000:]
        else:
            assert code == 0, (argv, out[-3000:])
            assert "pretrain" in out and "synthesize_dataset" not in out
            if "--quiet" in argv:
                assert len(out.splitlines()) < 100  # a summary per rule
            if "hssl_table2.md" in argv[1]:
                assert {r: n for r, n in job_counts(out).items() if r.startswith("report_")} == {"report_table": 1}
    assert results_files(checkout) == []


def dry_run_settings(out: str) -> dict[str, list[dict]]:
    """The settings records that a dry run with --printshellcmds shows each rule's jobs being handed."""
    import dataclasses

    from medssl.jobs import JOBS

    found: dict[str, list[dict]] = {}
    for kind, rest in re.findall(r"medssl (\w+) --settings (.*)$", out, re.M):
        record = json.loads(shlex.split(rest)[0])
        assert set(record) == {f.name for f in dataclasses.fields(JOBS[kind])}
        found.setdefault(kind, []).append(record)
    return found


def test_paper_config_has_no_demo_leak(checkout):
    """With `--configfile config/paper.yaml` every job is handed exactly paper.yaml's settings (its defaults
    written out): not one demo key (steps, 32/64 px, synthetic, quarter width) survives."""
    from medssl import jobs
    from medssl.config import load_config

    target = "results/paper/hssl/metrics/hssl/msd_heart/5/seed0.json"
    code, out = snakemake_cli(target, "-n", "-p", "--configfile", "config/paper.yaml", cwd=checkout)
    assert code == 0, out[-3000:]
    handed = dry_run_settings(out)
    paper = load_config(checkout / "config" / "paper.yaml")
    assert handed["finetune"] == [json.loads(jobs.record(paper, "finetune", study="hssl", run="hssl",
                                                         dataset="msd_heart", ratio="5", seed=0).to_json())]
    assert handed["finetune"][0]["width"] == 1.0 and handed["finetune"][0]["stage"]["steps"] is None
    assert {r["image_size"] for r in handed["slice"]} == {192} and not any(r["synthetic"] for r in handed["slice"])
    assert len(handed["pretrain"]) == 1 and handed["pretrain"][0]["stage"]["epochs"] == 1000


def test_demo_is_the_config_without_configfile(checkout):
    """The README's main command (as a dry run) uses the demo, and a `--config` override still applies."""
    code, out = snakemake_cli("--cores", "2", "all", "-n", "--config", "experiment=demo2", cwd=checkout)
    assert code == 0, out[-3000:]
    assert "synthesize_dataset" in out and "results/demo2/tables/hssl_table2.md" in out


def test_nested_config_override_from_the_command_line(checkout):
    """`--config 'data={image_size: 64}'` (a nested value, which snakemake hands over as strings) reaches the
    jobs typed and merged into the config file's other data keys."""
    code, out = snakemake_cli("results/paper_64/splits/msd_heart.json", "results/paper_64/splits/mmwhs_ct.json", "-n",
                              "-p", "--configfile", "config/paper.yaml", "--config", "experiment=paper_64",
                              "data={image_size: 64}", cwd=checkout)
    assert code == 0, out[-3000:]
    handed = dry_run_settings(out)
    assert sorted(r["image_size"] for r in handed["slice"]) == [64, 256]  # the 256 px are per dataset
    heart = next(r for r in handed["split"] if r["dataset"] == "msd_heart")
    assert heart["split"] == {"ratios": [0.7, 0.1, 0.2], "seed": 0, "scans_subset_sampling": "random"}


def test_manual_download_instructions_reach_the_console(checkout):
    """A dataset behind a registration stops its fetch job; the console (not only the job's log) says where
    to register, what to download and the exact folder to put it in."""
    config = tiny_config(datasets=("acdc", "msd_heart"))
    config["synthetic"] = False
    path = write_config(checkout, "manual", config)
    code, out = snakemake_cli("results/tiny/data/acdc", "--cores", "1", "--configfile", path, cwd=checkout)
    assert code != 0
    assert "needs a manual download" in out and f"{checkout}/resources/raw/acdc" in out, out[-3000:]
    # A dry run says it first, one line a dataset, before anything runs (issue 25).
    code, out = snakemake_cli("all", "-n", "--quiet", "rules", "--configfile", "config/paper.yaml", cwd=checkout)
    assert code == 0 and "5 of the 10 datasets need a manual download" in out, out[-3000:]
    for name in ("acdc", "mnms", "oai_zib", "mmwhs_ct", "mmwhs_mri"):
        assert re.search(rf"^\s+{name}: register at https?://.+, download .+ and put it in "
                         rf"{re.escape(str(checkout))}/resources/raw/", out, re.M), name
    assert len(out.splitlines()) < 100  # -n --quiet rules: a summary (the full dry run: ~2,000 lines)


def test_lint_is_clean(checkout):
    code, out = snakemake_cli("--lint", cwd=checkout)
    assert code == 0, out
    assert "Lints for" not in out, out


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``root`` but Snakemake's own logs and inventory cache."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith((".snakemake/log/", ".snakemake/iocache/"))}


def test_looking_changes_nothing(checkout):
    """-n, --lint, --rulegraph, --report and another experiment's dry run write no file (the jobs' settings
    travel in their params; no plan file is written at parse): results/ and .snakemake/ stay as they were."""
    code, out = snakemake_cli("results/demo/splits/msd_heart.json", "--cores", "1", cwd=checkout)
    assert code == 0, out[-3000:]
    before = tree_state(checkout)
    for args in (["all", "-n"], ["--lint"], ["--rulegraph"], ["all", "-n", "--configfile", "config/paper.yaml"],
                 ["all", "-n", "--config", "device=cuda", "threads=4"], ["all", "-n", "--config", "experiment=b"],
                 ["--report", "r.html"]):
        code, out = snakemake_cli(*args, cwd=checkout)
        assert code == 0 or args[0] == "--report", (args, out[-2000:])
        assert tree_state(checkout) == {**before, **({"r.html": tree_state(checkout)["r.html"]}
                                                     if "r.html" in tree_state(checkout) else {})}, args
    assert not (checkout / "results" / "b").exists()


def test_invalid_config_fails_naming_the_key(checkout):
    """A typo in a config is one line naming the key (not the schema dumped whole)."""
    config = tiny_config()
    config["data"]["image_sise"] = 32
    code, out = snakemake_cli("-n", "--configfile", write_config(checkout, "bad", config), cwd=checkout)
    assert code != 0 and "config key 'data': Additional properties are not allowed ('image_sise'" in out
    assert len(out.splitlines()) < 30 and "additionalProperties" not in out, out


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
    assert "medssl: 6 of 6 tables and figures are in place:" in out and "results/tiny/tables/hssl_table2.md" in out
    assert "| Task | Anno. | TFS | SimCLR | HSSL |" in out.split("Headline", 1)[1]
    res = checkout / "results" / "tiny"
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
    # Table 1: the spleen is sampled to 10 slices with foreground, and its split and pretraining use only them
    with open(res / "tables" / "hssl_table1.csv") as f:
        table1 = {r["dataset"]: r for r in csv.DictReader(f)}
    spleen = table1["msd_spleen"]
    assert spleen["sampled_slices"] == "10" and int(spleen["foreground_slices"]) > 10 and spleen["synthetic"] == "true"
    assert sum(int(spleen[f"sampled_{s}"]) for s in ("train", "val", "test")) == 10
    assert table1["msd_heart"]["sampled_slices"] == table1["msd_heart"]["foreground_slices"]
    # The job's log starts with its settings record, one key a line, and where it ran; the run's config and
    # plan are recorded once it succeeded (for people: no job reads them).
    log = (res / "logs" / "finetune" / "hssl" / "hssl" / "msd_heart" / "100" / "seed0.log").read_text()
    assert re.search(r"finetune job, settings record [0-9a-f]{16}:\n", log) and "\n  lr: 0.001\n" in log, log[:2000]
    assert "runs on: device auto, threads 1, num_workers 0, checkpoint_every 1" in log
    assert yaml.safe_load((res / "config.yaml").read_text())["experiment"] == "tiny"
    resolved = yaml.safe_load((res / "plan.yaml").read_text())  # every default applied, for people to read
    assert resolved["studies"]["hssl"]["runs"]["hssl"]["finetune"]["lr"] == 0.001

    # Every training job drew its curves; the pretraining logged the representation monitor, one line an epoch
    # and no progress bar; `medssl status` lists every training job as done.
    for folder in [res / "hssl" / "pretrain" / r / "all" for r in ("simclr", "hssl")] + \
            [res / "hssl" / "finetune" / r / "msd_heart" / "100" / "seed0" for r in ("tfs", "simclr", "hssl")]:
        assert (folder / "progress.png").stat().st_size > 10_000, folder
    header = (res / "hssl" / "pretrain" / "hssl" / "all" / "log.csv").read_text().splitlines()[0]
    assert "knn_task" in header and "knn_group" in header and "embed_std" in header
    pre_log = (res / "logs" / "pretrain" / "hssl" / "hssl" / "all.log").read_text()
    assert "epoch 1/1: loss " in pre_log and "s/epoch" in pre_log and "\r" not in pre_log
    proc = subprocess.run([str(Path(sys.executable).with_name("medssl")), "status", "--config", path], cwd=checkout,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "total: 5 of 5 done" in proc.stdout, proc.stdout + proc.stderr

    # The README's report command, from the root: the table is in it with its caption.
    code, out = snakemake_cli("--configfile", path, "--report", "report.html", cwd=checkout)
    assert code == 0, out[-3000:]
    html = (checkout / "report.html").read_text()
    assert "hssl_table2.html" in html and "synthetic phantom twins" in html and "{% if" not in html
    assert "HSSL Table 2: Dice" in html  # listed by its title
    assert "Training" in html and "progress.png" in html  # the curves of every training job
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
    assert job_counts(out) == {"finetune": 3, "report_table": 1, "all": 1}, out[-3000:]
    assert (res / "config.yaml").read_text() == recorded  # a dry run claims nothing

    # A run's own finetune settings rerun that run only.
    config = tiny_config()
    config["studies"]["hssl"]["runs"]["tfs"]["finetune"] = {"lr": 5e-4}
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert job_counts(out) == {"finetune": 1, "report_table": 1, "all": 1}, out[-3000:]
    assert "logs/finetune/hssl/tfs/msd_heart" in out and "logs/finetune/hssl/hssl/msd_heart" not in out

    # The split seed reruns the splits and everything that reads them, but not the phantoms or the slicing.
    config = tiny_config()
    config["data"]["split"]["seed"] = 1
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    counts = job_counts(out)
    assert counts["split_dataset"] == 2 and counts["finetune"] == 3 and counts["pretrain"] == 2, out[-3000:]
    assert "synthesize_dataset" not in counts and "slice_dataset" not in counts

    # The sample size reruns that dataset's slicing and what reads it, not its phantoms or the other dataset.
    config = tiny_config()
    config["datasets"]["msd_spleen"]["sample_slices"] = 8
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    counts = job_counts(out)
    assert counts["slice_dataset"] == 1 and counts["split_dataset"] == 1 and counts["pretrain"] == 2, out[-3000:]
    assert "synthesize_dataset" not in counts

    # The networks' width is read by every training job: it reruns them (issue 21: it used to rerun nothing).
    config = tiny_config()
    config["model_width"] = 0.125
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert job_counts(out) == {"pretrain": 2, "finetune": 3, "report_table": 1, "all": 1}, out[-3000:]

    # Where jobs run is no setting of theirs: device, threads, loader workers and checkpoints rerun nothing.
    config = tiny_config()
    config["device"], config["threads"] = "cpu", 2
    config["studies"]["hssl"]["finetune"].update(num_workers=1, checkpoint_every=3)
    write_config(checkout, "tiny", config)
    code, out = snakemake_cli("all", "-n", "--configfile", path, cwd=checkout)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]

    # Another experiment in the same folder: with the same dataset settings it shares the phantom twins (no
    # synthesis of its own); with other twin settings it makes its own; neither invalidates the first.
    write_config(checkout, "tiny", tiny_config())
    other = tiny_config(experiment="other")
    code, out = snakemake_cli("results/other/splits/msd_heart.json", "--cores", "2", "--configfile",
                              write_config(checkout, "other", other), cwd=checkout)
    assert code == 0 and "synthesize_dataset" not in job_counts(out), out[-3000:]
    other["data"]["synthetic"]["patients"] = 6
    code, out = snakemake_cli("results/other/splits/msd_heart.json", "--cores", "2", "--configfile",
                              write_config(checkout, "other", other), cwd=checkout)
    assert code == 0 and job_counts(out)["synthesize_dataset"] == 1, out[-3000:]
    assert len(list((checkout / "resources" / "synthetic" / "msd_heart").iterdir())) == 2
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
        assert "loss" in log[0] and "embed_std" in log[0] and len(log) == 3  # the monitor's epoch 0, epoch 1
    assert "sim" in (res / "ssmtl_ct" / "pretrain" / "fcn_ssmtl_plus" / "all" / "log.csv").read_text().splitlines()[0]
    for table in ("ssmtl_table2", "ssmtl_table4"):
        assert "synthetic" in (res / "tables" / f"{table}.md").read_text().lower()


def _job_processes(checkout: Path, stage: str) -> list[int]:
    """The pids of the `medssl <stage>` jobs running in ``checkout`` (from /proc: their command line and folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            here = Path(os.readlink(proc / "cwd")) == checkout
        except (OSError, ValueError):
            continue
        if here and any(a.endswith(b"medssl") for a in argv[:2]) and stage.encode() in argv[1:3]:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="finds the running job through /proc (Linux)")
def test_a_second_terminal_cannot_change_a_running_workflow(checkout):
    """While a run goes on, `snakemake -n --config device=cuda` and a second `snakemake` that the lock refuses,
    in the same folder, change nothing the running jobs read: the run finishes, on the CPU, every job done (the
    plan file that every parse rewrote made the next job fail, "no CUDA device"). The second terminal acts while
    the run is held inside a pretraining job (SIGSTOP), so that the timing is always the same: a job running,
    more to come."""
    import signal
    import time

    path = write_config(checkout, "tiny", tiny_config())
    exe = Path(sys.executable).with_name("snakemake")
    run = subprocess.Popen([str(exe), "all", "--cores", "1", "--configfile", path], cwd=checkout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    held: list[int] = []
    try:
        deadline = time.time() + 300
        while not held and run.poll() is None and time.time() < deadline:
            for pid in _job_processes(checkout.resolve(), "pretrain"):
                os.kill(pid, signal.SIGSTOP)
                held.append(pid)
            time.sleep(0.05)
        assert held and run.poll() is None, "no pretraining job to hold while the second terminal acts"
        code, out = snakemake_cli("all", "-n", "--configfile", path, "--config", "device=cuda", cwd=checkout)
        assert code == 0, out[-2000:]
        code, out = snakemake_cli("all", "--cores", "1", "--configfile", path, cwd=checkout)
        assert code != 0 and "cannot be locked" in out, out[-2000:]
        for pid in held:
            os.kill(pid, signal.SIGCONT)
        out, _ = run.communicate(timeout=900)
    finally:
        for pid in held:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        run.kill()
    assert run.returncode == 0, out[-3000:]
    assert "medssl: 6 of 6 tables and figures are in place" in out
    logs = list((checkout / "results" / "tiny" / "logs" / "finetune").rglob("*.log"))
    assert logs and all("runs on: device auto" in log.read_text() for log in logs)


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
    assert {r: n for r, n in counts.items() if r.startswith("report_")} == {"report_table": 1}
    assert "tsne_features" not in counts


def test_demo_all_schedules_every_table_and_figure(checkout):
    """`all` on the demo config makes every table and figure of both papers (dry run)."""
    from medssl.reports.targets import TARGETS

    code, out = snakemake_cli("all", "-n", cwd=checkout)
    assert code == 0, out
    counts = job_counts(out)
    tables = [t for t, info in TARGETS.items() if info.is_table]
    assert {r: n for r, n in counts.items() if r.startswith("report_")} == {
        "report_table": len(tables), "report_figure": len(TARGETS) - len(tables)}
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
