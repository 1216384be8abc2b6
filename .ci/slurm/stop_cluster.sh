#!/usr/bin/env bash
# Stop the daemons start_cluster.sh started (by the PIDs in their pid files, never by name).
set -uo pipefail
started=/run/slurm/medssl-ci.started
[ -f "$started" ] || { echo "stop_cluster: nothing to stop ($started missing)"; exit 0; }

# Cancel what is left of our jobs first, so slurmd does not leave job steps behind.
if command -v scancel >/dev/null; then scancel --full --quiet --state=RUNNING,PENDING --user="$(id -un)" 2>/dev/null || true; fi

# Reverse order: slurmd, slurmctld, munged.
tac "$started" | while read -r name pidfile; do
    [ -n "${name:-}" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        echo "stop_cluster: stopped $name (pid $pid)"
    else
        echo "stop_cluster: $name not running"
    fi
done
rm -f "$started"
