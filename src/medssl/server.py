"""The job server: torch and the job modules imported once, each local workflow job a fork of that process.

A ``medssl`` job in a fresh process spends about 1.7 s of CPU starting Python and importing torch before it
reads its first input (``python bench/bench_jobs.py``), and the demo runs some 170 jobs. When Snakemake runs
jobs on this machine (its local executor, not ``--profile slurm`` nor a conda deployment), the workflow starts
one server (``onstart``, :func:`start`); the server imports torch and the job modules (:data:`PRELOAD`) and
listens on a Unix socket. Each ``medssl <command>`` (:func:`medssl.server_client.delegate`, the first thing
:func:`medssl.cli.main` does) hands the server its arguments, working directory, environment and its stdin,
stdout and stderr, and the server forks a child that runs the command exactly as the process itself would (:func:`medssl.cli.main`),
writing to the job's own log; the client waits for the child's exit status, ends the log with the child's
CPU time and peak memory, and exits with that status. SIGTERM, SIGINT and SIGHUP to the client are passed to
the child (Snakemake cancelling a job), and a client that goes away takes its child with it.

Anything short of a running child (no server, another host, another medssl or Python, a refused peer, a
server that is still importing) runs the command in-process instead: the server only ever saves time, and
a job's files and numbers are the same either way (each job seeds every generator itself).

Safety: the socket lives in a fresh directory only the user can enter (``tempfile.mkdtemp``, mode 0700), the
server serves only peers of its own uid (``SO_PEERCRED``), and it runs ``medssl`` commands, nothing else.
It never runs a tensor operation or touches CUDA before forking, so a child starts with no thread pool and
no CUDA context to inherit. It exits on SIGTERM (the workflow's ``onsuccess``/``onerror``) and when the
workflow's process is gone. Linux only (``MEDSSL_SERVER=off`` turns it off).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medssl.server_client import ENV, identity

SOCKET_NAME = "server.sock"
#: modules a job imports; the server imports them once (those that fail to import are left to the jobs)
PRELOAD = ("torch", "numpy", "jsonschema", "medssl.cli", "medssl.jobs", "medssl.train.pretrain",
           "medssl.train.finetune", "medssl.train.evaluate", "medssl.data.slicing", "medssl.data.splits",
           "medssl.data.sources", "medssl.data.phantoms", "medssl.reports.builders", "medssl.reports.extract",
           "medssl.reports.summary", "matplotlib.pyplot")
_MAX_MESSAGE = 1 << 20


# ---------------------------------------------------------------------------------------------- server

def _preload() -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job (its fds, directory, environment) and run it; never returns."""
    code = 70
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["medssl", *request["argv"]]
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))  # the job's threads (Snakemake sets it)
        from medssl.cli import main

        code = main(request["argv"], delegate_to_server=False)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else int(err.code is not None)  # as the interpreter would
    except BaseException as err:  # noqa: BLE001 - the child must end here, whatever happened
        print(f"medssl: error: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Server:
    """The accept-fork-reap loop (module docstring); single-threaded, so forking is safe."""

    def __init__(self, path: str, parent: int | None):
        self.path, self.parent = path, parent
        self.identity = identity()
        self.children: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.stopping = False

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(self.path + ".part")
        os.rename(self.path + ".part", self.path)  # clients see the socket only once it is bound
        listener.listen(64)
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, "listen")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        self.listener, self.selector, self.wake = listener, sel, (wake_r, wake_w)
        while not (self.stopping or self._parent_gone()):
            for key, _ in sel.select(timeout=1.0):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                else:
                    self._client_event(key.fileobj, key.data)
            self._reap()
        listener.close()
        for pid in list(self.children):  # the workflow is gone or stopped us: so go its jobs
            self._kill(pid)
        _remove_socket(self.path)  # also when the workflow died without stop()

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _parent_gone(self) -> bool:
        return self.parent is not None and os.getppid() != self.parent

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            conn.settimeout(10)
            message, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
            request = json.loads(message)
        except (OSError, ValueError):
            conn.close()
            return
        if uid != os.getuid() or len(fds) != 3 or {k: request.get(k) for k in self.identity} != self.identity:
            for fd in fds:
                os.close(fd)
            conn.close()  # the client runs the command itself
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child keeps only the job's three fds of everything the server holds
            for held in (self.listener, conn, self.selector, *self.children.values()):
                held.close()
            for fd in self.wake:
                os.close(fd)
            _run_child(request, fds)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode())
        except OSError:
            self._kill(pid)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _client_event(self, conn: socket.socket, pid: int) -> None:
        """A client sends nothing after its request: readable means it went away; its child goes too."""
        try:
            data = conn.recv(16)
        except OSError:
            data = b""
        if not data and pid in self.children:
            self.selector.unregister(conn)
            self._kill(pid)

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            rc = os.waitstatus_to_exitcode(status)
            result = {"rc": rc if rc >= 0 else 128 - rc, "cpu": usage.ru_utime + usage.ru_stime,
                      "maxrss_mb": usage.ru_maxrss / 1024}
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            try:
                conn.sendall(json.dumps(result).encode())
            except OSError:
                pass
            conn.close()


# ---------------------------------------------------------------------------------------------- workflow

def wanted(local: bool, conda: bool) -> bool:
    """Start a server for this workflow run: jobs run on this machine, in this Python (no conda deployment),
    on Linux, and ``$MEDSSL_SERVER`` is not ``off``."""
    return local and not conda and sys.platform == "linux" and os.environ.get(ENV) != "off"


def start(log: str | os.PathLike) -> subprocess.Popen:
    """Start a server for this process's jobs and point ``$MEDSSL_SERVER`` at it (jobs inherit it). Returns at
    once: until the server listens, jobs run in-process."""
    folder = tempfile.mkdtemp(prefix="medssl-server-")
    path = str(Path(folder) / SOCKET_NAME)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "medssl.server", "--socket", path, "--parent",
                                 str(os.getpid())], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    proc.socket_path = path
    os.environ[ENV] = path
    return proc


def wait_until_listening(proc: subprocess.Popen, log: str | os.PathLike, timeout: float = 120.0) -> float:
    """Seconds until a server :func:`start` started listens; RuntimeError with its log if it exits or times out
    first (the workflow does not wait: its jobs run in-process until then)."""
    t0 = time.perf_counter()
    while not Path(proc.socket_path).exists():
        if proc.poll() is not None or time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"the job server did not start: {Path(log).read_text(errors='replace')}")
        time.sleep(0.05)
    return time.perf_counter() - t0


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a server :func:`start` started, and remove its socket directory."""
    if proc is None:
        return
    path = proc.socket_path
    if os.environ.get(ENV) == path:
        del os.environ[ENV]
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _remove_socket(path)


def _remove_socket(path: str) -> None:
    """Remove the socket and its folder if that holds nothing else (never anything but the socket)."""
    for remove, target in ((os.unlink, path), (os.unlink, path + ".part"), (os.rmdir, str(Path(path).parent))):
        try:
            remove(target)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medssl.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the Unix socket to listen on")
    parser.add_argument("--parent", type=int, help="exit when this process (the workflow) is gone")
    args = parser.parse_args(argv)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)  # `python -m` put the working directory first; a job's own process has no such entry
    started = time.perf_counter()
    _preload()
    print(f"medssl job server: {len(PRELOAD)} modules imported in {time.perf_counter() - started:.1f} s; "
          f"listening on {args.socket}", flush=True)
    Server(args.socket, args.parent).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
