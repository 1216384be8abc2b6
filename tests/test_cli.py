"""The command line on bad input: one ``medssl: error: ...`` line and a non-zero exit, never a traceback;
manual-download instructions on the console; SIGTERM exits normally so temporary files are cleaned up."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from medssl import cli, registry

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "config" / "config.yaml")


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("medssl: error:")]


def _settings_args(**over) -> list[str]:
    args = {"study": "hssl", "run": "tfs", "dataset": "msd_heart", "ratio": "5", "seed": "0"}
    args.update(over)
    return ["settings", "finetune", "--config", DEMO] + [a for k, v in args.items() for a in (f"--{k}", v)]


def test_bad_seed_is_one_line(capsys):
    rc = cli.main(_settings_args(seed="abc"))
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medssl: error:") and "--seed" in err and "'abc'" in err


@pytest.mark.parametrize("key, value", [("study", "nope"), ("run", "nope"), ("dataset", "msd_nope"),
                                        ("ratio", "7")])
def test_unknown_name_is_one_line(capsys, key, value):
    rc = cli.main(_settings_args(**{key: value}))
    assert rc != 0
    lines = _error_lines(capsys)
    assert len(lines) == 1 and f"'{value}'" in lines[0] and key in lines[0]


def test_settings_prints_the_record_the_workflow_hands_the_job(capsys):
    from medssl import jobs
    from medssl.config import load_config

    assert cli.main(_settings_args()) == 0
    printed = capsys.readouterr().out.strip()
    expected = jobs.record(load_config(DEMO), "finetune", study="hssl", run="tfs", dataset="msd_heart", ratio="5",
                           seed=0)
    assert jobs.FinetuneJob.from_json(printed) == expected and printed == expected.to_json()


def test_missing_config_file_is_one_line(capsys, tmp_path):
    rc = cli.main(["settings", "fetch", "--config", str(tmp_path / "nope.yaml"), "--dataset", "acdc"])
    assert rc != 0
    lines = _error_lines(capsys)
    assert len(lines) == 1 and "nope.yaml" in lines[0]


def test_the_medssl_command_exits_with_mains_code(tmp_path):
    """The console script (``cli.run``: main, then gc.freeze before the exit) keeps main's exit code and its
    one-line error."""
    exe = str(Path(sys.executable).with_name("medssl"))
    proc = subprocess.run([exe, "settings", "fetch", "--config", str(tmp_path / "nope.yaml"), "--dataset", "acdc"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr, proc.stderr
    proc = subprocess.run([exe, "settings", "fetch", "--config", str(DEMO), "--dataset", "msd_heart"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and '"dataset":"msd_heart"' in proc.stdout.replace(" ", ""), proc.stderr


@pytest.mark.parametrize("settings, expect", [("{broken", "not a JSON settings record"),
                                              ('{"dataset": "x"}', "missing"),
                                              ("no/such/file.json", "neither a JSON record nor a readable file")])
def test_a_bad_settings_record_is_one_line(capsys, tmp_path, settings, expect):
    rc = cli.main(["split", "--settings", settings, "--store", str(tmp_path), "--out", str(tmp_path / "s.json")])
    assert rc != 0
    lines = _error_lines(capsys)
    assert len(lines) == 1 and expect in lines[0]


def _real_config(tmp_path: Path) -> dict:
    return {"experiment": "t", "resources": str(tmp_path / "res"), "synthetic": False,
            "data": {"image_size": 32}, "datasets": {"acdc": {}, "msd_heart": {}}}


def test_manual_instructions_on_the_console(capsys, tmp_path):
    from conftest import job_settings

    rc = cli.main(["fetch", "--settings", job_settings(_real_config(tmp_path), "fetch", dataset="acdc"),
                   "--out", str(tmp_path / "ready.json")])
    assert rc == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("medssl: error:")
    assert registry.get("acdc").source.register_url in err
    assert str((tmp_path / "res" / "raw" / "acdc").resolve()) in err
    assert not (tmp_path / "ready.json").exists()


def test_pending_manual_instructions_for_the_workflow(tmp_path):
    from medssl.data.sources import pending_manual_instructions

    from medssl import config as mcfg

    config = mcfg.resolve(mcfg.validate(_real_config(tmp_path)))
    text = pending_manual_instructions(config)
    assert registry.get("acdc").source.register_url in text and "msd_heart" not in text
    assert pending_manual_instructions({**config, "synthetic": True}) == ""


def test_sigterm_exits_normally_and_cleans_up(tmp_path):
    target = tmp_path / "out" / "big.bin"
    script = textwrap.dedent("""
        import sys, time
        from medssl import cli
        from medssl.io import atomic_path
        cli.exit_on_sigterm()
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_bytes(b"partial" * 1000)
            print("ready", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert any(target.parent.iterdir())  # the temporary file exists while writing
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert rc == 128 + signal.SIGTERM
    assert not target.exists() and not list(target.parent.iterdir())


def _medssl(cwd: Path, *args: str) -> list[str]:
    """Run the ``medssl`` command in ``cwd``; its log lines (stderr)."""
    proc = subprocess.run([str(Path(sys.executable).parent / "medssl"), *args], cwd=cwd, capture_output=True,
                          text=True, check=True)
    return proc.stderr.splitlines()


def test_job_logs_name_each_case_and_end_with_what_was_written(tmp_path):
    """Issue 14: synthesis and slicing log one line per case; every job's log starts with its settings record,
    one key a line, and ends with the files it wrote, its final figures and its time."""
    from conftest import job_settings

    config = yaml.safe_load(Path(DEMO).read_text())
    config["data"]["synthetic"]["patients"] = 3
    raw = "resources/synthetic/msd_spleen"
    lines = _medssl(tmp_path, "synthesize", "--settings", job_settings(config, "synthesize", dataset="msd_spleen"),
                    "--out", raw)
    assert "synthesize job, settings record" in lines[0] and lines[1:5] == [
        "dataset: msd_spleen", "declaration: {}", "patients: 3", "scale: 0.25"]
    assert sum(": case msd_spleen_" in line for line in lines) == 3
    assert "wrote resources/synthetic/msd_spleen/dataset.json" in lines[-4]
    assert "imagesTr (3 files" in lines[-3] and "synthesize finished in" in lines[-1]
    lines = _medssl(tmp_path, "slice", "--settings", job_settings(config, "slice", dataset="msd_spleen"),
                    "--source", raw, "--out", "store")
    cases = [line for line in lines if ": case msd_spleen_" in line]
    assert len(cases) == 3 and all("slices of" in line and "with foreground" in line for line in cases)
    assert [line.split("wrote ")[1].split(" (")[0] for line in lines if "medssl: wrote" in line] == [
        "store/images.npy", "store/index.csv", "store/labels.npy", "store/meta.json"]
    lines = _medssl(tmp_path, "split", "--settings", job_settings(config, "split", dataset="msd_spleen"),
                    "--store", "store", "--out", "split.json")
    assert "wrote split.json" in lines[-3] and "split: patients train" in lines[-2]
    assert "labelled slices per subset" in lines[-2] and "split finished in" in lines[-1]


def test_training_job_log_ends_with_its_files_and_last_epoch(tmp_path, caplog):
    import argparse
    import logging

    out = tmp_path / "F"
    out.mkdir()
    (out / "model.pt").write_bytes(b"x" * 10)
    (out / "log.csv").write_text("epoch,step,loss,val_dice,lr,time\n1,2,0.9,,0.001,1.0\n2,4,0.5,0.8,0.0005,1.1\n")
    (out / ".model.pt.tmp").write_bytes(b"")  # hidden temporaries are not listed
    with caplog.at_level(logging.INFO, logger="medssl"):
        cli.log_closing(argparse.Namespace(command="finetune", out=str(out), metrics=None), None, 3.25)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"wrote {out / 'log.csv'} (75 bytes)", f"wrote {out / 'model.pt'} (10 bytes)",
                     "finetune: last epoch: epoch 2, step 4, loss 0.5, val_dice 0.8, lr 0.0005, time 1.1",
                     "finetune finished in 3.2 s"]


def test_every_argument_explains_itself():
    """Issue 25: every argument of every subcommand has help text, every subcommand a one-line description and
    an example; the top-level help says that snakemake runs the study and shows no reST markup."""
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lacking = []
    for name, p in sub.choices.items():
        assert p.description and "example:" in p.description and f"medssl {name}" in p.description, name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help and action.help.strip()):
                lacking.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not lacking, f"arguments without help: {lacking}"
    assert all(a.help for a in sub._choices_actions), "a subcommand without its one-line summary"
    text = parser.format_help()
    assert "``" not in text and "snakemake --cores 2 all" in text and "medssl status" in text
