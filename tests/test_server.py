"""The job server (medssl.server, medssl.server_client): a fork runs a command as the process itself would, or
the process runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from medssl import server, server_client

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the job server is Linux only")
MEDSSL = str(Path(sys.executable).with_name("medssl"))


@pytest.fixture
def job_server(tmp_path, monkeypatch):
    """A running server, as the workflow's onstart starts one; ``$MEDSSL_SERVER`` names its socket."""
    monkeypatch.delenv(server.ENV, raising=False)
    proc = server.start(tmp_path / "server.log")
    path = Path(os.environ[server.ENV])
    server.wait_until_listening(proc, tmp_path / "server.log")
    yield proc
    server.stop(proc)
    assert proc.poll() is not None and not path.parent.exists()  # stopped, its socket folder removed


def medssl(*args: str, cwd: Path, served: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ) if served else {**os.environ, server.ENV: "off"}
    return subprocess.run([MEDSSL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_fork_writes_what_the_process_writes_and_exits_as_it_does(job_server, tmp_path):
    config = tiny_config()
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    runs = {}
    for served in (True, False):
        out = f"twin_{served}"
        runs[served] = medssl("synthesize", "--config", "tiny.yaml", "--dataset", "msd_heart", "--out", out,
                              cwd=tmp_path, served=served)
        assert runs[served].returncode == 0, runs[served].stderr
    assert server_client.forked_cpu(runs[True].stderr) > 0  # the fork's log went to the job's stderr
    assert server_client.forked_cpu(runs[False].stderr) == 0 and "synthesize finished in" in runs[True].stderr
    assert tree(tmp_path / "twin_True") == tree(tmp_path / "twin_False")  # byte for byte

    bad = {served: medssl("split", "--config", "missing.yaml", "--dataset", "msd_heart", "--store", "x",
                          "--out", "y", cwd=tmp_path, served=served) for served in (True, False)}
    assert bad[True].returncode == bad[False].returncode == 1  # bad input: the same exit status and error line
    assert bad[True].stderr.splitlines()[0] == bad[False].stderr.strip() and "missing.yaml" in bad[False].stderr
    help_text = medssl("--help", cwd=tmp_path, served=True)
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage: medssl")  # stdout is the client's


def test_a_cancelled_job_takes_its_fork_with_it(job_server, tmp_path):
    """SIGTERM to the client (Snakemake cancelling a job) ends the fork with status 143, as it would end the
    process itself; a client killed outright (SIGKILL) takes its fork with it too."""
    config = tiny_config()
    config["data"]["synthetic"] = {"patients": 60, "seed": 0, "scale": 0.5}  # a minute or so of work
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(config))
    cmd = [MEDSSL, "synthesize", "--config", "big.yaml", "--dataset", "msd_heart", "--out", "twin"]

    def forks() -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(job_server.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def started(client: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while not forks():
            assert client.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # the fork is past its imports and working

    client = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started(client)
    client.send_signal(signal.SIGTERM)
    _, err = client.communicate(timeout=60)
    assert client.returncode == 143, err
    assert not forks() and not (tmp_path / "twin" / "dataset.json").exists()

    client = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started(client)
    client.kill()
    client.wait(timeout=30)
    deadline = time.monotonic() + 30
    while forks():
        assert time.monotonic() < deadline, "the fork outlived its killed client"
        time.sleep(0.1)


def test_a_client_the_server_refuses_runs_the_command_itself(job_server, monkeypatch, capsys):
    """A client of another Python or medssl (or no server at all) gets no fork: delegate() returns None and
    medssl.cli.main runs the command in-process."""
    monkeypatch.setattr(server_client, "identity", lambda: {"python": "/another/python", "medssl": "/x/medssl"})
    assert server_client.delegate(["--help"]) is None
    monkeypatch.setenv(server.ENV, "/nonexistent/server.sock")
    assert server_client.delegate(["--help"]) is None
    monkeypatch.setenv(server.ENV, "off")
    assert server_client.delegate(["--help"]) is None
    assert capsys.readouterr().err == ""


def test_the_workflow_starts_a_server_only_where_jobs_run_here():
    assert server.wanted(local=True, conda=False) is (os.environ.get(server.ENV) != "off")
    assert not server.wanted(local=False, conda=False)  # --profile slurm: jobs run on other nodes
    assert not server.wanted(local=True, conda=True)  # jobs run in another Python
