"""Helpers of run_slurm_ci.sh: write the test configs, and check outputs and SLURM job records.

    python ci_checks.py write-configs WORKDIR EPOCHS
    python ci_checks.py check-outputs WORKDIR CONFIG          every target of `all` exists
    python ci_checks.py check-jobs CONFIG [MIN_JOB_ID]        one SLURM job per DAG job, GPU only for training
    python ci_checks.py job-id COMMENT [last]                 id of the running job with that comment
                                                              (last: of the newest job, whatever its state)
    python ci_checks.py check-resume WORKDIR RUN EPOCHS JOBID [requeued]

Job records come from `squeue --states=all` and `scontrol show job` (the cluster keeps finished jobs for
MinJobAge = 600 s; there is no slurmdbd, so no sacct). The snakemake SLURM executor labels every job with
``--comment rule_<rule>_wildcards_<values>``.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from conftest import tiny_config  # noqa: E402

from medssl import config as cfg  # noqa: E402
from medssl import cost  # noqa: E402

GPU_RULES = set(cost.GPU_RULES)
PREEMPT_RUNS = ("preempt_requeue", "preempt_cancel")


def fail(msg: str) -> None:
    print(f"ci_checks: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def small_config() -> dict:
    """tests/conftest.py's tiny_config(), without studies (and the reports naming them) on datasets it
    does not hold, should the demo config have grown some."""
    config = tiny_config()
    names = set(config["datasets"])
    studies = {k: s for k, s in config["studies"].items()
               if set(s["pretrain_datasets"]) | set(s["finetune_datasets"]) <= names}
    if studies != config["studies"]:
        config["studies"] = studies
        config.pop("reports", None)
    return config


def write_configs(workdir: str, epochs: str) -> None:
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    config = small_config()
    cfg.validate(dict(config))
    (wd / "tiny.yaml").write_text(yaml.safe_dump(config))
    # Same experiment (the data stage is reused) plus two pretraining runs long enough to interrupt:
    # several short epochs, a checkpoint after each. threads 2 checks cpus_per_task = threads on a real job.
    pre = small_config()
    pre["threads"] = 2
    for run in PREEMPT_RUNS:
        pre["studies"]["hssl"]["runs"][run] = {
            "method": "rotation", "arch": "hssl_net",
            "pretrain": {"epochs": int(epochs), "steps_per_epoch": 2, "checkpoint_every": 1},
        }
    (wd / "preempt.yaml").write_text(yaml.safe_dump(pre))
    print(f"ci_checks: wrote {wd / 'tiny.yaml'} and {wd / 'preempt.yaml'}")


def expected_outputs(config: dict) -> list[str]:
    """Every file `snakemake all` must leave behind (paths as in workflow/rules/*.smk)."""
    out = f"results/{config['experiment']}"
    jobs = cost.dag_jobs(config)
    files = []
    for w in jobs.get("split_dataset", []):
        files += [f"{out}/splits/{w['dataset']}.json", f"{out}/data/{w['dataset']}/index.csv"]
    for w in jobs.get("pretrain", []):
        files.append(f"{out}/{w['study']}/pretrain/{w['run']}/{w['pool']}/model.pt")
    for w in jobs.get("finetune", []) if config.get("keep_finetuned_models", False) else []:  # else not written
        files.append(f"{out}/{w['study']}/finetune/{w['run']}/{w['dataset']}/{w['ratio']}/seed{w['seed']}/model.pt")
    for w in jobs.get("finetune", []):  # finetuning evaluates in the same job
        base = f"{out}/{w['study']}/metrics/{w['run']}/{w['dataset']}/{w['ratio']}/seed{w['seed']}"
        files += [f"{base}.json", f"{base}_pred.npz"]
    for w in jobs.get("tsne_features", []):
        files.append(f"{out}/{w['study']}/features/{w['run']}.npz")
    from medssl.reports import targets as report_targets

    for target in report_targets.configured_targets(config):
        files += [str(p) for p in report_targets.outputs(config, target)]
    return files


def check_outputs(workdir: str, config_path: str) -> None:
    config = cfg.load_config(config_path)
    files = expected_outputs(config)
    missing = [f for f in files if not (Path(workdir) / f).is_file()]
    if missing:
        fail("missing outputs:\n  " + "\n  ".join(missing))
    print(f"ci_checks: all {len(files)} expected outputs exist")


def slurm_jobs(min_id: int = 0) -> list[dict]:
    ids = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i"], check=True,
                         capture_output=True, text=True).stdout.split()
    jobs = []
    for jid in sorted({int(i.split("_")[0]) for i in ids if i.strip()}):
        if jid < min_id:
            continue
        text = subprocess.run(["scontrol", "show", "job", "--oneliner", str(jid)], check=True,
                              capture_output=True, text=True).stdout.strip()
        fields = dict(re.findall(r"(\w+)=(\S*)", text))
        m = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", fields.get("Comment", ""))
        fields["rule"] = m.group(1) if m else None
        jobs.append(fields)
    return jobs


def check_jobs(config_path: str, min_id: str = "0") -> None:
    config = cfg.load_config(config_path)
    expected = {r: n for r, n in cost.job_counts(config).items() if r != "all"}   # `all` runs locally
    jobs = [j for j in slurm_jobs(int(min_id)) if j["rule"]]
    counts: dict[str, int] = {}
    problems = []
    for j in jobs:
        rule = j["rule"]
        counts[rule] = counts.get(rule, 0) + 1
        tres = j.get("TresPerJob", "") + j.get("TresPerNode", "")
        gpu = "gpu" in tres
        line = (f"job {j['JobId']} {j['Comment']}: partition {j.get('Partition')}, TresPerJob "
                f"{j.get('TresPerJob', '-')}, state {j.get('JobState')}")
        print("ci_checks:", line)
        if j.get("JobState") != "COMPLETED":
            problems.append(f"{line}: not COMPLETED")
        if rule in GPU_RULES and not (gpu and j.get("Partition") == "gpu"):
            problems.append(f"{line}: a training job without a GPU request on partition gpu")
        if rule not in GPU_RULES and (gpu or j.get("Partition") != "debug"):
            problems.append(f"{line}: a CPU job with a GPU request or off partition debug")
        if j.get("Requeue") != "1":
            problems.append(f"{line}: not submitted with --requeue (profile slurm-requeue)")
    if counts != expected:
        problems.append(f"SLURM jobs per rule {counts} != DAG jobs per rule (medssl.cost) {expected}")
    if problems:
        fail("\n  ".join(problems))
    print(f"ci_checks: {sum(counts.values())} SLURM jobs match the DAG; GPU requested by exactly the training jobs")


def job_id(comment: str, which: str = "running") -> None:
    jobs = [j for j in slurm_jobs() if j.get("Comment") == comment]
    if which != "last":
        jobs = [j for j in jobs if j.get("JobState") in ("RUNNING", "PENDING", "CONFIGURING")]
    if not jobs:
        fail(f"no {which} job with comment {comment}")
    print(max(int(j["JobId"]) for j in jobs))


def check_resume(workdir: str, run: str, epochs: str, jid: str, requeued: str = "") -> None:
    wd = Path(workdir)
    out = wd / "results" / "tiny" / "hssl" / "pretrain" / run / "all"
    log = wd / "results" / "tiny" / "logs" / "pretrain" / "hssl" / run / "all.log"
    text = log.read_text() if log.exists() else ""
    m = re.search(r"resuming from epoch (\d+)", text)
    if not m:
        fail(f"{log} does not say 'resuming from epoch E':\n{text[-3000:]}")
    resumed = int(m.group(1))
    if not 1 <= resumed < int(epochs):
        fail(f"resumed from epoch {resumed}, expected 1..{int(epochs) - 1}")
    if not (out / "model.pt").is_file():
        fail(f"{out / 'model.pt'} missing after the resumed run")
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    # one row per trained epoch, 1..epochs once each (no repeat after the resume); the representation
    # monitor adds its epoch-0 baseline, measured before training, as a row of its own without a loss
    trained = [int(r["epoch"]) for r in rows if r.get("loss")]
    baseline = [int(r["epoch"]) for r in rows if not r.get("loss")]
    if trained != list(range(1, int(epochs) + 1)) or baseline not in ([], [0]):
        fail(f"{out / 'log.csv'} epochs {[r['epoch'] for r in rows]}, expected 1..{epochs} (and the monitor's 0)")
    job = next((j for j in slurm_jobs() if j["JobId"] == jid), None)
    if job is None:
        fail(f"SLURM job {jid} not found")
    if requeued and job.get("Restarts") != "1":
        fail(f"job {jid} Restarts={job.get('Restarts')}, expected 1 (requeued once)")
    if job.get("NumCPUs") != "2":
        fail(f"job {jid} NumCPUs={job.get('NumCPUs')}, expected 2 (cpus_per_task = config threads)")
    print(f"ci_checks: {run}: SLURM job {jid} (restarts {job.get('Restarts')}) resumed from epoch {resumed} "
          f"and finished all {epochs} epochs; model.pt written")


if __name__ == "__main__":
    commands = {"write-configs": write_configs, "check-outputs": check_outputs, "check-jobs": check_jobs,
                "job-id": job_id, "check-resume": check_resume}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    commands[sys.argv[1]](*sys.argv[2:])
