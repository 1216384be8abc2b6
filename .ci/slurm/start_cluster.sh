#!/usr/bin/env bash
# Start a single-node SLURM cluster with two fake GPUs on loopback (root, no systemd; Debian 12 packages
# munge slurmctld slurmd slurm-client, SLURM 22.05). Stop it with stop_cluster.sh.
#
# Writes /etc/slurm/slurm.conf and gres.conf from the templates beside this script (refuses to touch
# a slurm.conf it did not write), starts munged (unless one already answers), slurmctld and slurmd,
# records what it started in /run/slurm/medssl-ci.started, and waits until the node is idle.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
conf_dir=/etc/slurm
marker="# medssl-ci"
started=/run/slurm/medssl-ci.started

die() { echo "start_cluster: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
for bin in munged mungekey slurmctld slurmd sinfo; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || die "$bin not installed (apt-get install munge slurmctld slurmd slurm-client)"
done
if [ -f "$started" ]; then
    die "a medssl-ci cluster is already running (see $started); run $here/stop_cluster.sh first"
fi
if [ -f "$conf_dir/slurm.conf" ] && ! head -n1 "$conf_dir/slurm.conf" | grep -q "^$marker"; then
    die "$conf_dir/slurm.conf exists and was not written by this script; refusing to replace it"
fi

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(/usr/sbin/slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)"
[ -n "$mem_mb" ] || mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"

mkdir -p /run/munge /run/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm "$conf_dir"
chown munge:munge /run/munge
chmod 0755 /run/munge
for f in slurm.conf gres.conf; do
    sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEM_MB@/$mem_mb/g" "$here/$f.in" > "$conf_dir/$f"
done
echo "start_cluster: node $host, $cpus CPUs, $mem_mb MB, partitions debug (default) and gpu, 2 fake GPUs"

: > "$started"
# From here on, a failure stops whatever this script already started.
trap 'rc=$?; if [ "$rc" != 0 ]; then bash "$here/stop_cluster.sh" >&2 || true; fi' EXIT
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "start_cluster: using the munged that is already running"
else
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --force
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    [ -s /run/munge/munged.pid ] || die "munged did not start"
    echo "munged /run/munge/munged.pid" >> "$started"
fi

# Start from a clean controller state: jobs of an earlier CI run must not come back.
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
/usr/sbin/slurmctld -i
echo "slurmctld /run/slurm/slurmctld.pid" >> "$started"
/usr/sbin/slurmd
echo "slurmd /run/slurm/slurmd.pid" >> "$started"

state=""
for _ in $(seq 120); do
    state="$(sinfo -h -o %t 2>/dev/null | head -n1 || true)"
    [ "$state" = idle ] && break
    sleep 0.5
done
if [ "$state" != idle ]; then
    echo "start_cluster: node state is '${state:-none}', not idle" >&2
    sinfo -N -l >&2 || true
    scontrol show node >&2 || true
    tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
fi
sinfo
