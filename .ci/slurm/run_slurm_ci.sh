#!/usr/bin/env bash
# CI with a real SLURM cluster (root on Debian 12; called by .ci/run). Takes ~6-8 min on 2 cores.
#
#  1. apt-get installs munge slurmctld slurmd slurm-client; start_cluster.sh starts a one-node cluster with
#     two fake GPUs on loopback (partitions debug (default) and gpu).
#  2. The tiny config of tests/conftest.py (plus a study with 4 finetunes of one run) runs end to end through
#       snakemake --profile slurm --profile .ci/slurm/profile all
#     (the user profile slurm/config.yaml + the CI overlay), then: every target exists, a local dry run
#     has nothing left to do, and the cluster's job records show one job per DAG job, per dataset's data
#     stage (job group) and per pack of K finetunes of a run (profile group-components), with a GPU request
#     (partition gpu) for pretrain/finetune only, one GPU a pack, every job submitted with --requeue; the
#     run with 4 finetunes went to SLURM as one job, whose log names all 4 outputs.
#  3. Packing, a failed member: a pack of 4 finetunes loses one (its process is killed once another member
#     has finished); snakemake fails, the finished member's outputs stay; a second `snakemake` submits one
#     pack of the members left and does not redo the finished one (its files are unchanged).
#  4. Preemption: a pretraining job of several epochs on the cluster's 2 GPUs (`gpus: 2`: 2 processes, gloo
#     on this CPU node) is requeued by SLURM (`scontrol requeue`, what preemption with PreemptMode=REQUEUE
#     does) after its first checkpoint; the same snakemake run waits, the job restarts, both processes
#     resume ("resuming from epoch E") and it finishes. Then another one is
#     cancelled (`scancel`): snakemake fails, a second `snakemake` resumes it from its checkpoint.
#  The daemons it started are stopped on exit (trap), whatever happens.
#
# Every step is time-bounded (apt-get 300 s, the tiny run 480 s, each packing and preemption run 240 s:
# worst case ~30 min); snakemake runs in the background and is waited for, so INT/TERM reach the trap at once.
# Environment: SLURM_CI_KEEP=1 keeps the work directory (it is always kept when the test fails).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
here="$repo/.ci/slurm"
t_all=480
t_step=240
preempt_epochs=20  # enough epochs that a cancel or requeue lands mid-run, even on a fast or loaded machine
start_s=$SECONDS

log() { echo "[slurm-ci $(date +%T) +$((SECONDS - start_s))s] $*"; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts daemons)"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
command -v snakemake >/dev/null && command -v medssl >/dev/null || die "snakemake/medssl not on PATH (activate .venv)"

# -- 1. packages and cluster -------------------------------------------------------------------------
missing=0
for bin in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch; do [ -x "$bin" ] || missing=1; done
if [ "$missing" = 1 ]; then
    log "installing munge slurmctld slurmd slurm-client"
    export DEBIAN_FRONTEND=noninteractive
    timeout 150 apt-get update -qq || die "apt-get update failed"
    timeout 150 apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null \
        || die "apt-get install failed"
fi

work="$(mktemp -d /tmp/medssl-slurm-ci.XXXXXX)"
bg_pid=""
cluster_started=0
cleanup() {
    rc=$?
    set +e  # errexit would end the handler at the first false test, before the daemons are stopped
    if [ -n "$bg_pid" ] && kill -0 "$bg_pid" 2>/dev/null; then  # timeout passes TERM on to snakemake,
        kids="$(ps -o pid= --ppid "$bg_pid" 2>/dev/null)"        # which cancels its SLURM jobs
        kill -TERM "$bg_pid" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 1; done
        for pid in $bg_pid $kids; do kill -KILL "$pid" 2>/dev/null; done
        wait "$bg_pid" 2>/dev/null
    fi
    if [ "$rc" != 0 ]; then
        log "diagnostics (exit $rc): work dir $work"
        sinfo -N -l 2>/dev/null || true
        squeue --states=all -o "%i %P %T %r %k" 2>/dev/null || true
        for f in "$work"/*.log; do
            [ -f "$f" ] || continue
            echo "==== $f (errors)"; grep -n -i -E "error|exception|will exit|shutting down" "$f" | head -n 20
            echo "==== $f (tail)"; tail -n 40 "$f"
        done
        find "$work/results" -path "*/logs/*" -name "*.log" 2>/dev/null | while read -r f; do echo "==== $f (tail)"; tail -n 15 "$f"; done
        find "$work/.snakemake/slurm_logs" -name "*.log" 2>/dev/null | tail -n 5 | while read -r f; do echo "==== $f (tail)"; tail -n 15 "$f"; done
        tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2>/dev/null || true
    fi
    if [ "$cluster_started" = 1 ]; then bash "$here/stop_cluster.sh" || true; fi
    if [ "${SLURM_CI_KEEP:-0}" != 1 ] && [ "$rc" = 0 ]; then rm -rf "$work"; fi
    log "done (exit $rc) after $((SECONDS - start_s)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$here/start_cluster.sh" || die "could not start the cluster"   # it cleans up after itself
cluster_started=1
log "cluster up; work dir $work"

sm_bg() {  # sm_bg TIMEOUT LOG ARGS...: snakemake through SLURM (user profile + CI overlay) in the
           # background, time-bounded; its pid in bg_pid
    local t="$1" out="$2"; shift 2
    timeout -k 30 "$t" snakemake "$@" --profile slurm --profile .ci/slurm/profile -d "$work" > "$out" 2>&1 &
    bg_pid=$!
}
sm_wait() {  # exit status of the background snakemake (124/137: timed out)
    local rc=0
    wait "$bg_pid" || rc=$?
    bg_pid=""
    return "$rc"
}
unlock() { snakemake --unlock -d "$work" --configfile "$1" >/dev/null 2>&1 || true; }

python "$here/ci_checks.py" write-configs "$work" "$preempt_epochs"
tiny="$work/tiny.yaml"
pre="$work/preempt.yaml"
pack="$work/pack.yaml"

# -- 2. the tiny config end to end ------------------------------------------------------------------
log "snakemake --profile slurm --profile .ci/slurm/profile all (tiny config)"
sm_bg "$t_all" "$work/all.log" all --configfile "$tiny"
rc=0; sm_wait || rc=$?
if [ "$rc" != 0 ]; then
    unlock "$tiny"; die "snakemake all failed (exit $rc; 124/137: timed out after ${t_all} s); see $work/all.log"
fi
grep -q "100%) done" "$work/all.log" || die "snakemake all did not finish every job"
python "$here/ci_checks.py" check-outputs "$work" "$tiny"
snakemake all -n --cores 1 -d "$work" --configfile "$tiny" > "$work/noop.log" 2>&1 || die "dry run failed"
grep -q "Nothing to be done" "$work/noop.log" || die "a local dry run after the SLURM run still has jobs to do"
python "$here/ci_checks.py" check-jobs "$tiny"
python "$here/ci_checks.py" check-pack "$work" "$tiny" packed
log "tiny config done through SLURM"

# -- 3. packing: a member of a pack fails; the next run redoes only what did not finish ----------------
targets_line="$(python "$here/ci_checks.py" targets "$pack" pack_fail)"
read -r -a targets <<< "$targets_line"
log "pack_fail: 4 finetunes, one pack; a member is killed once another has finished"
sm_bg "$t_step" "$work/pack.1.log" "${targets[@]}" --configfile "$pack"
python "$here/ci_checks.py" kill-member "$work" "$pack" pack_fail "$bg_pid" || die "could not kill a member"
rc=0; sm_wait || rc=$?
[ "$rc" != 0 ] || die "snakemake succeeded although a member of its pack was killed"
unlock "$pack"
python "$here/ci_checks.py" check-pack-failed "$work" "$pack" pack_fail
log "pack_fail: snakemake failed as it should (exit $rc); running it again"
rerun_after="$(python "$here/ci_checks.py" last-job-id)"
sm_bg "$t_step" "$work/pack.2.log" "${targets[@]}" --configfile "$pack"
rc=0; sm_wait || rc=$?
[ "$rc" = 0 ] || { unlock "$pack"; die "the second pack_fail run failed (exit $rc)"; }
python "$here/ci_checks.py" check-pack-rerun "$work" "$pack" pack_fail "$rerun_after"
log "packing done"

# -- 4. preemption: requeue (same run) and cancel (second run) -------------------------------------
wait_for_checkpoint() {  # RUN: until the first checkpoint of RUN exists (the job is still running)
    local ckpt="$work/results/tiny/hssl/pretrain/$1/all/checkpoint.pt"
    for _ in $(seq 480); do
        [ -f "$ckpt" ] && return 0
        kill -0 "$bg_pid" 2>/dev/null || die "snakemake ended before $1 wrote a checkpoint"
        sleep 0.5
    done
    die "no checkpoint for $1 after 240 s"
}

for run in preempt_requeue preempt_cancel; do
    target="results/tiny/hssl/pretrain/$run/all/model.pt"
    log "$run: pretraining ($preempt_epochs epochs, checkpoint every epoch) through SLURM"
    sm_bg "$t_step" "$work/$run.1.log" "$target" --configfile "$pre"
    wait_for_checkpoint "$run"
    jid="$(python "$here/ci_checks.py" job-id "rule_pretrain_wildcards_hssl_${run}_all")"
    # a running job logs its epochs to log.partial.csv (written before each checkpoint; log.csv once done);
    # its first column is the epoch, and its last row the last finished one (a monitor row 0 may come first)
    done_epochs="$(tail -n 1 "$work/results/tiny/hssl/pretrain/$run/all/log.partial.csv" | cut -d, -f1)"
    if [ "$run" = preempt_requeue ]; then
        log "$run: checkpoint after epoch $done_epochs; scontrol requeue $jid (preemption)"
        scontrol requeue "$jid" || die "scontrol requeue $jid refused (job not submitted with --requeue?)"
        rc=0; sm_wait || rc=$?
        [ "$rc" = 0 ] || { unlock "$pre"; die "snakemake did not finish the requeued job (exit $rc)"; }
        python "$here/ci_checks.py" check-resume "$work" "$run" "$preempt_epochs" "$jid" requeued
    else
        log "$run: checkpoint after epoch $done_epochs; scancel $jid"
        scancel "$jid"
        rc=0; sm_wait || rc=$?
        [ "$rc" != 0 ] || die "snakemake succeeded although its job was cancelled"
        unlock "$pre"
        log "$run: snakemake failed as it should (exit $rc); running it again"
        sm_bg "$t_step" "$work/$run.2.log" "$target" --configfile "$pre"
        rc=0; sm_wait || rc=$?
        [ "$rc" = 0 ] || { unlock "$pre"; die "the second run failed (exit $rc)"; }
        jid2="$(python "$here/ci_checks.py" job-id "rule_pretrain_wildcards_hssl_${run}_all" last)"
        [ "$jid2" != "$jid" ] || die "the second run submitted no new job"
        python "$here/ci_checks.py" check-resume "$work" "$run" "$preempt_epochs" "$jid2"
    fi
done

log "PASS: SLURM profile, GPU requests, packing, requeue and resume from checkpoint"
