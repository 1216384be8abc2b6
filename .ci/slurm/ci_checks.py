"""Helpers of run_slurm_ci.sh: write the test configs, and check outputs and SLURM job records.

    python ci_checks.py write-configs WORKDIR EPOCHS
    python ci_checks.py check-outputs WORKDIR CONFIG          every target of `all` exists
    python ci_checks.py check-jobs CONFIG [MIN_JOB_ID]        one SLURM job per DAG job, or per pack of a job
                                                              group; GPU only for training
    python ci_checks.py check-pack WORKDIR CONFIG RUN         RUN's finetunes: one SLURM job per K, one GPU
    python ci_checks.py targets CONFIG RUN                    the metrics files of RUN's finetunes
    python ci_checks.py last-job-id                           the newest SLURM job id (0: none)
    python ci_checks.py kill-member WORKDIR CONFIG RUN PID    once a member of RUN's pack has finished, kill
                                                              the next one's process (PID: snakemake's)
    python ci_checks.py check-pack-failed WORKDIR CONFIG RUN  the finished member's outputs were kept
    python ci_checks.py check-pack-rerun WORKDIR CONFIG RUN MIN_JOB_ID
                                                              the rerun made only the unfinished members
    python ci_checks.py job-id COMMENT [last]                 id of the running job with that comment
                                                              (last: of the newest job, whatever its state)
    python ci_checks.py check-resume WORKDIR RUN EPOCHS JOBID [requeued]

Job records come from `squeue --states=all` and `scontrol show job` (the cluster keeps finished jobs for
MinJobAge = 600 s; there is no slurmdbd, so no sacct). The snakemake SLURM executor labels every job with
``--comment rule_<rule>_wildcards_<values>``, and a group job (a pack) with ``--comment rule_<group>_<rules>``:
``rule_finetune_<study>_<run>_finetune`` (group ``finetune_{study}_{run}``, K of them a job: the profile's
group-components) and ``rule_data_<dataset>_<rules>`` (group ``data_{dataset}``: source, slicing, split).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from conftest import tiny_config  # noqa: E402

from medssl import config as cfg  # noqa: E402
from medssl import cost  # noqa: E402

GPU_RULES = set(cost.GPU_RULES)
PREEMPT_RUNS = ("preempt_requeue", "preempt_cancel")
# the requeued pretraining trains on the cluster's 2 (fake) GPUs: 2 processes (gloo on this CPU node), with
# the negatives of HSSL's L_img gathered from both; each process gets `threads` CPUs
PREEMPT_GPUS = {"preempt_requeue": 2, "preempt_cancel": 1}
PREEMPT_METHODS = {"preempt_requeue": "hssl", "preempt_cancel": "rotation"}
PREEMPT_THREADS = 1
PACK_STUDY = "packed"          # a study trained from scratch with 4 label ratios: 4 finetunes a run, one pack
PACK_RUN = "packed"            # tiny.yaml: its finetunes fill one pack (K = 4) in `all`
PACK_FAIL_RUN = "pack_fail"    # pack.yaml: a pack of 4 that loses a member, then is run again
PACK_RATIOS = ["5", "10", "50", "100"]
PROFILES = (REPO / "slurm" / "config.yaml", REPO / ".ci" / "slurm" / "profile" / "config.yaml")


def pack_size() -> int:
    """K: finetunes to a SLURM job, from the profiles as `--profile slurm --profile .ci/slurm/profile` merge them
    (a later profile's key replaces an earlier one's)."""
    components: dict = {}
    for path in PROFILES:
        components = yaml.safe_load(path.read_text()).get("group-components", components)
    return int(components.get("finetune_{study}_{run}", 1))


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


def with_pack_study(config: dict) -> dict:
    """``config`` plus a study that no report names (so `all` makes its summary from all its finetunes), with
    one run trained from scratch (no pretraining to wait for) and 4 label ratios: 4 finetunes, one pack."""
    study = dict(config["studies"]["hssl"], label_ratios=PACK_RATIOS, title="packing (CI)")
    study["runs"] = {PACK_RUN: {"method": "tfs", "arch": "hssl_net", "label": "TFS"}}
    config["studies"][PACK_STUDY] = study
    return config


def write_configs(workdir: str, epochs: str) -> None:
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    config = with_pack_study(small_config())
    cfg.validate(dict(config))
    (wd / "tiny.yaml").write_text(yaml.safe_dump(config))
    # Same experiment plus a second run of the pack study: one pack of 4, one member of which is killed
    # (kill-member), then run again (check-pack-rerun).
    pack = with_pack_study(small_config())
    pack["studies"][PACK_STUDY]["runs"][PACK_FAIL_RUN] = {"method": "tfs", "arch": "hssl_net"}
    cfg.validate(dict(pack))
    (wd / "pack.yaml").write_text(yaml.safe_dump(pack))
    # Same experiment (the data stage is reused) plus two pretraining runs long enough to interrupt:
    # several short epochs, a checkpoint after each; one on 2 GPUs (cpus_per_task = threads x gpus = 2).
    pre = small_config()
    pre["threads"] = PREEMPT_THREADS
    for run in PREEMPT_RUNS:
        pre["studies"]["hssl"]["runs"][run] = {
            "method": PREEMPT_METHODS[run], "arch": "hssl_net",
            "pretrain": {"epochs": int(epochs), "steps_per_epoch": 2, "checkpoint_every": 1,
                         "gpus": PREEMPT_GPUS[run]},
        }
    (wd / "preempt.yaml").write_text(yaml.safe_dump(pre))
    print(f"ci_checks: wrote {wd / 'tiny.yaml'}, {wd / 'pack.yaml'} and {wd / 'preempt.yaml'}")


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
        comment = fields.get("Comment", "")
        fields["pack"] = None
        m = re.match(r"rule_(finetune_.+)_finetune$|rule_(data_.+?)_(?:fetch|slice|split|synthesize)_dataset", comment)
        if m and "_wildcards_" not in comment:      # a group job: rule_<group id>_<its rules>
            fields["pack"] = m.group(1) or m.group(2)
            fields["rule"] = "finetune" if m.group(1) else "data"
        else:
            m = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", comment)
            fields["rule"] = m.group(1) if m else None
        fields["gpus"] = gpu_count(fields.get("TresPerJob", "") + " " + fields.get("TresPerNode", ""))
        jobs.append(fields)
    return jobs


def gpu_count(tres: str) -> int:
    """GPUs in a TresPerJob/TresPerNode field (gres:gpu:fake:1, gres:gpu:2, gres/gpu=1)."""
    return sum(int(n) for n in re.findall(r"gpu(?::[A-Za-z0-9_.]+)?[:=](\d+)", tres))


def stdout_log(job: dict) -> str:
    """The text of a SLURM job's output file (the snakemake run inside it), "" if it is gone."""
    path = job.get("StdOut", "").replace("%j", job["JobId"]).replace("%A", job["JobId"])
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def expected_slurm_jobs(config: dict) -> dict[str, int]:
    """SLURM jobs `all` makes from scratch: one per job of an ungrouped rule (`all` runs locally), one per
    dataset for the data stage (group data_<dataset>), and one per K finetunes of a run."""
    jobs = cost.dag_jobs(config)
    k = pack_size()
    expected = {rule: len(js) for rule, js in jobs.items()
                if rule not in ("all", "finetune", "synthesize_dataset", "fetch_dataset", "slice_dataset",
                                "split_dataset")}
    expected["data"] = len(jobs.get("split_dataset", []))
    runs: dict[tuple, int] = {}
    for w in jobs.get("finetune", []):
        runs[(w["study"], w["run"])] = runs.get((w["study"], w["run"]), 0) + 1
    expected["finetune"] = sum(math.ceil(n / k) for n in runs.values())
    return expected


def check_jobs(config_path: str, min_id: str = "0") -> None:
    config = cfg.load_config(config_path)
    expected = expected_slurm_jobs(config)
    jobs = [j for j in slurm_jobs(int(min_id)) if j["rule"]]
    counts: dict[str, int] = {}
    problems = []
    for j in jobs:
        rule = j["rule"]
        counts[rule] = counts.get(rule, 0) + 1
        line = (f"job {j['JobId']} {j['Comment']}: partition {j.get('Partition')}, TresPerJob "
                f"{j.get('TresPerJob', '-')}, CPUs {j.get('NumCPUs')}, state {j.get('JobState')}")
        print("ci_checks:", line)
        if j.get("JobState") != "COMPLETED":
            problems.append(f"{line}: not COMPLETED")
        if rule in GPU_RULES and not (j["gpus"] >= 1 and j.get("Partition") == "gpu"):
            problems.append(f"{line}: a training job without a GPU request on partition gpu")
        if rule == "finetune" and j["gpus"] != 1:
            problems.append(f"{line}: a finetuning job (a pack) asks for {j['gpus']} GPUs, not one")
        if rule not in GPU_RULES and (j["gpus"] or j.get("Partition") != "debug"):
            problems.append(f"{line}: a CPU job with a GPU request or off partition debug")
        if j.get("Requeue") != "1":
            problems.append(f"{line}: not submitted with --requeue (profile slurm-requeue)")
    if counts != expected:
        problems.append(f"SLURM jobs per rule {counts} != expected from the DAG (medssl.cost; finetune: one per "
                        f"{pack_size()} of a run, data: one per dataset) {expected}")
    if problems:
        fail("\n  ".join(problems))
    print(f"ci_checks: {sum(counts.values())} SLURM jobs match the DAG and its packs; GPU requested by exactly "
          "the training jobs, one for each pack of finetunes")


def finetunes(config: dict, run: str) -> list[dict]:
    """RUN's finetuning jobs: wildcards and their metrics file, log and --out folder (paths as in the rules)."""
    out = f"results/{config['experiment']}"
    jobs = []
    for study, s in config["studies"].items():
        r = s["runs"].get(run)
        if r is None:
            continue
        for dataset in r["finetune_datasets"]:
            for ratio in r["label_ratios"]:
                for seed in s["seeds"]:
                    rel = f"{run}/{dataset}/{ratio}/seed{seed}"
                    jobs.append({"study": study, "run": run, "dataset": dataset, "ratio": str(ratio), "seed": seed,
                                 "metrics": f"{out}/{study}/metrics/{rel}.json",
                                 "log": f"{out}/logs/finetune/{study}/{rel}.log",
                                 "out": f"{out}/{study}/finetune/{rel}"})
    if not jobs:
        fail(f"no finetuning jobs of run {run}")
    return jobs


def pack_jobs(study: str, run: str, min_id: int = 0) -> list[dict]:
    return [j for j in slurm_jobs(min_id) if j["pack"] == f"finetune_{study}_{run}"]


def check_pack(workdir: str, config_path: str, run: str) -> None:
    """RUN's finetunes went to SLURM as packs of K (one sbatch, one GPU each); each pack's log names the
    outputs of its members, and every member's outputs exist."""
    config = cfg.load_config(config_path)
    members = finetunes(config, run)
    k = pack_size()
    jobs = pack_jobs(members[0]["study"], run)
    if len(jobs) != math.ceil(len(members) / k):
        fail(f"{len(members)} finetunes of run {run} went to SLURM as {len(jobs)} jobs, expected "
             f"{math.ceil(len(members) / k)} (K = {k}): {[j['Comment'] for j in jobs]}")
    made = []
    for j in jobs:
        text = stdout_log(j)
        mine = [m for m in members if m["metrics"] in text]
        if j.get("JobState") != "COMPLETED" or j["gpus"] != 1 or not mine:
            fail(f"pack {j['JobId']} ({j['Comment']}): state {j.get('JobState')}, {j['gpus']} GPUs, "
                 f"{len(mine)} members named in its log {j.get('StdOut')}")
        made += [m["metrics"] for m in mine]
        print(f"ci_checks: SLURM job {j['JobId']} ({j['Comment']}, {j.get('TresPerJob')}, {j.get('NumCPUs')} CPU, "
              f"{j.get('MinMemoryNode', '-')} memory, time limit {j.get('TimeLimit')}, "
              f"{j.get('StartTime')} - {j.get('EndTime')}) made {len(mine)} finetunes:")
        for m in mine:
            print(f"ci_checks:   {m['metrics']}")
    missing = [m["metrics"] for m in members if not (Path(workdir) / m["metrics"]).is_file()]
    if sorted(made) != sorted(m["metrics"] for m in members) or missing:
        fail(f"members made by the packs {sorted(made)}; missing outputs {missing}")
    print(f"ci_checks: run {run}: {len(members)} finetunes in {len(jobs)} SLURM job(s), one GPU each (K = {k})")


def targets(config_path: str, run: str) -> None:
    print(" ".join(m["metrics"] for m in finetunes(cfg.load_config(config_path), run)))


def last_job_id() -> None:
    print(max([int(j["JobId"]) for j in slurm_jobs()], default=0))


def _member_pids(run: str) -> dict[str, int]:
    """--out folder -> pid of the `medssl finetune` processes of RUN running now (the python process,
    not the shell that started it)."""
    pids = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in argv if a]
        if len(argv) < 3 or not any(Path(a).name == "medssl" for a in argv[:2]) or "finetune" not in argv[1:3]:
            continue
        if "--out" in argv:
            out = argv[argv.index("--out") + 1]
            if f"/finetune/{run}/" in f"/{out}":
                pids[out] = int(proc.name)
    return pids


def kill_member(workdir: str, config_path: str, run: str, snakemake_pid: str, timeout: str = "240") -> None:
    """Wait until one member of RUN's pack has finished and the next one runs; kill that one's process
    (SIGKILL, as the kernel's OOM killer would). Writes what it saw to WORKDIR/pack_fail.json."""
    wd = Path(workdir)
    members = finetunes(cfg.load_config(config_path), run)
    by_out = {m["out"]: m for m in members}
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        done = [m for m in members if (wd / m["metrics"]).is_file()]
        running = {out: pid for out, pid in _member_pids(run).items()
                   if out in by_out and not (wd / by_out[out]["metrics"]).is_file()}
        if done and running:
            out, pid = sorted(running.items())[0]
            os.kill(pid, signal.SIGKILL)
            killed = by_out[out]
            state = {"killed": killed["metrics"],
                     "finished": {f: (wd / f).stat().st_mtime_ns for m in done for f in (m["metrics"], m["log"])}}
            (wd / "pack_fail.json").write_text(json.dumps(state, indent=1))
            print(f"ci_checks: {len(done)} member(s) of the pack finished ({', '.join(m['metrics'] for m in done)}); "
                  f"killed pid {pid}, the finetune writing {killed['metrics']}")
            return
        try:
            os.kill(int(snakemake_pid), 0)
        except OSError:
            fail(f"snakemake ended before a member of run {run} could be killed")
        time.sleep(0.2)
    fail(f"no member of run {run} to kill after {timeout} s")


def check_pack_failed(workdir: str, config_path: str, run: str) -> None:
    """After the pack failed: the finished members' outputs are still there (keep-incomplete), the killed
    member's metrics are not, and the pack's SLURM job FAILED."""
    wd = Path(workdir)
    state = json.loads((wd / "pack_fail.json").read_text())
    members = finetunes(cfg.load_config(config_path), run)
    gone = [f for f in state["finished"] if not (wd / f).is_file()]
    if gone:
        fail(f"outputs of finished members removed when their pack failed: {gone}")
    if (wd / state["killed"]).is_file():
        fail(f"{state['killed']} exists although its finetune was killed")
    jobs = pack_jobs(members[0]["study"], run)
    if len(jobs) != 1 or jobs[0].get("JobState") != "FAILED":
        fail(f"expected one FAILED pack of run {run}: {[(j['JobId'], j.get('JobState')) for j in jobs]}")
    # what the rerun must leave alone: every member finished by now (more than at the kill, should the pack
    # have gone on after it)
    done = [m for m in members if (wd / m["metrics"]).is_file()]
    state["finished"] = {f: (wd / f).stat().st_mtime_ns for m in done for f in (m["metrics"], m["log"])}
    (wd / "pack_fail.json").write_text(json.dumps(state, indent=1))
    left = [m["metrics"] for m in members if m not in done]
    print(f"ci_checks: pack {jobs[0]['JobId']} FAILED; its finished member(s) kept their outputs "
          f"({', '.join(m['metrics'] for m in done)}); {len(left)} to do: {', '.join(left)}")


def check_pack_rerun(workdir: str, config_path: str, run: str, min_id: str) -> None:
    """The second run made the unfinished members, in one pack, and left the finished ones' files as they were."""
    wd = Path(workdir)
    state = json.loads((wd / "pack_fail.json").read_text())
    members = finetunes(cfg.load_config(config_path), run)
    changed = [f for f, mtime in state["finished"].items() if (wd / f).stat().st_mtime_ns != mtime]
    if changed:
        fail(f"the rerun redid finished members (files rewritten: {changed})")
    missing = [m["metrics"] for m in members if not (wd / m["metrics"]).is_file()]
    if missing:
        fail(f"missing after the rerun: {missing}")
    todo = [m for m in members if m["metrics"] not in state["finished"]]
    jobs = pack_jobs(members[0]["study"], run, int(min_id) + 1)
    text = stdout_log(jobs[0]) if len(jobs) == 1 else ""
    named = [m["metrics"] for m in members if m["metrics"] in text]
    if len(jobs) != 1 or jobs[0].get("JobState") != "COMPLETED" or sorted(named) != sorted(m["metrics"] for m in todo):
        fail(f"expected one COMPLETED pack making {[m['metrics'] for m in todo]}: "
             f"{[(j['JobId'], j.get('JobState')) for j in jobs]}, its log names {named}")
    killed_log = (wd / next(m["log"] for m in members if m["metrics"] == state["killed"])).read_text(errors="replace")
    resumed = re.search(r"resuming from epoch \d+", killed_log)
    print(f"ci_checks: rerun: one pack (SLURM job {jobs[0]['JobId']}, {jobs[0].get('TresPerJob')}) made the "
          f"{len(todo)} unfinished member(s); the finished one(s) were not redone (files unchanged)"
          + (f"; the killed one: {resumed.group(0)}" if resumed else ""))


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
    gpus = PREEMPT_GPUS.get(run, 1)
    if job.get("NumCPUs") != str(PREEMPT_THREADS * gpus):
        fail(f"job {jid} NumCPUs={job.get('NumCPUs')}, expected {PREEMPT_THREADS * gpus} (cpus_per_task = "
             "threads x gpus)")
    if job["gpus"] != gpus:
        fail(f"job {jid} TresPerJob={job.get('TresPerJob')}, expected {gpus} GPU(s)")
    if gpus > 1 and (f"starting {gpus} CPU processes (gloo)" not in text or f"x {gpus} processes" not in text):
        fail(f"{log} (the restarted job's) does not say that {gpus} processes trained:\n{text[-3000:]}")
    print(f"ci_checks: {run}: SLURM job {jid} ({gpus} GPU(s), {job.get('NumCPUs')} CPUs, restarts "
          f"{job.get('Restarts')}) resumed from epoch {resumed} and finished all {epochs} epochs; model.pt written")


if __name__ == "__main__":
    commands = {"write-configs": write_configs, "check-outputs": check_outputs, "check-jobs": check_jobs,
                "check-pack": check_pack, "targets": targets, "last-job-id": last_job_id,
                "kill-member": kill_member, "check-pack-failed": check_pack_failed,
                "check-pack-rerun": check_pack_rerun, "job-id": job_id, "check-resume": check_resume}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    commands[sys.argv[1]](*sys.argv[2:])
