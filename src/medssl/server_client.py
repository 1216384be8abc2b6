"""The client side of the job server (:mod:`medssl.server`): what ``medssl <command>`` does first.

:func:`delegate` hands the command to the server named by ``$MEDSSL_SERVER`` and returns the fork's exit
status, or None when no fork was started, and the caller runs the command itself. It imports nothing heavy,
so a command that runs in-process pays nothing for trying.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys

ENV = "MEDSSL_SERVER"  # the socket path, set by medssl.server.start(); "off" disables the server
#: the line a forked job's log ends with (stderr), and how to read its CPU seconds back (bench/bench_jobs.py)
FORK_REPORT = "medssl: ran as a fork of the job server (pid {pid}): {cpu:.2f} CPU-s, peak memory {mb:.0f} MB"
_FORK_CPU = re.compile(r"ran as a fork of the job server \(pid \d+\): ([0-9.]+) CPU-s")


def forked_cpu(text: str) -> float:
    """CPU seconds of the job-server forks a job's stderr or log reports; 0 when it ran in its own process."""
    return sum(float(m) for m in _FORK_CPU.findall(text))


def identity() -> dict:
    """What a client and the server must share: the Python and the medssl they run."""
    import medssl

    return {"python": os.path.realpath(sys.executable), "medssl": os.path.realpath(medssl.__file__)}


def delegate(argv: list[str]) -> int | None:
    """Run ``medssl argv`` as a fork of the server named by ``$MEDSSL_SERVER``; its exit status, or None when no
    child was started (then the caller runs the command itself)."""
    path = os.environ.get(ENV)
    if not path or path == "off" or sys.platform != "linux":
        return None
    try:
        fds = [0, 1, 2]
        for fd in fds:
            os.fstat(fd)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.settimeout(10)
        conn.connect(path)
        request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), **identity()}
        socket.send_fds(conn, [json.dumps(request).encode()], fds)
    except OSError:
        return None  # no server took the request
    conn.settimeout(None)  # it has the request now: a fork or a refusal follows, never both a fork and a run here
    try:
        reply = conn.recv(4096)
    except OSError:
        reply = b""
    if not reply:
        return None  # refused (another medssl or Python, another user) or stopping: no fork was started
    child = json.loads(reply)["pid"]

    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        message = conn.recv(4096)
    except OSError:
        message = b""
    if not message:
        print(f"medssl: error: the job server ({path}) went away while it ran this job", file=sys.stderr)
        return 1
    result = json.loads(message)
    print(FORK_REPORT.format(pid=child, cpu=result["cpu"], mb=result["maxrss_mb"]), file=sys.stderr)
    return int(result["rc"])
