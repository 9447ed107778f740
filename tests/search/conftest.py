"""Fixtures for the search tests: a local multi-node Ray cluster on 127.0.0.1, a real
PostgreSQL server on 127.0.0.1, study files, and helpers to run the CLI as a real process.

Every process started here is stopped here (cluster.shutdown, pg_ctl stop)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Ray stays on the loopback address (see nas_dil.search.cluster); set before ray is imported
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[2]

SLEEP_STUDY = """
name = "{name}"
space = "{space}"
n_trials = {n_trials}
seed = 0
objectives = {objectives}
[trial]
kind = "sleep"
sleep_s = {sleep_s}
evals = {evals}
[parallel]
max_in_flight = {in_flight}
cpus = 1
max_retries = {retries}
[early_stop]
enabled = {early}
min_completed = 3
{seeds}"""
# the orchestration tests count trials: one seed per baseline and no confirmation, unless a
# test asks for them (``seeds=""``: the defaults; or its own [noise] / [confirm] tables)
ONE_SEED = "[noise]\nbaseline_seeds = 1\n[confirm]\nseeds = 0\n"


def sleep_study(path: Path, *, name: str = "s", space: str = "hdc", n_trials: int = 6,
                sleep_s: float = 0.2, evals: int = 3, in_flight: int = 2, retries: int = 2,
                early: bool = False, objectives: str = "[\"miou\", \"rf\", \"gflops\"]",
                extra: str = "", seeds: str = ONE_SEED) -> Path:
    path.write_text(SLEEP_STUDY.format(name=name, space=space, n_trials=n_trials,
                                       sleep_s=sleep_s, evals=evals, in_flight=in_flight,
                                       retries=retries, early=str(early).lower(),
                                       objectives=objectives, seeds=seeds) + extra)
    return path


class RayCluster:
    """ray.cluster_utils.Cluster on 127.0.0.1: a head without CPUs and worker nodes."""

    def __init__(self, nodes: int, cpus: int) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={
            "node_ip_address": "127.0.0.1", "num_cpus": 0, "include_dashboard": False})
        self.nodes = [self.add(cpus) for _ in range(nodes)]

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add(self, cpus: int, **kw: Any) -> Any:
        return self.cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1", **kw)

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Two worker nodes of 2 CPUs; this test process stays connected (one Ray job), so
    in-process searches reuse warm workers. CLI subprocesses connect as their own jobs."""
    from nas_dil.search import cluster

    c = RayCluster(nodes=2, cpus=2)
    try:
        cluster.connect(c.address)
        yield c
    finally:
        c.shutdown()


def run_cli(*args: str, timeout: float = 240, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_dil", "search", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nas_dil", "search", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is a descendant of this test process (so its Ray cluster's): a test
    never signals another session's trial workers."""
    me = os.getpid()
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def trial_workers() -> list[int]:
    """Pids of Ray workers running a trial right now (process title ray::nas_dil_trial),
    started by this test process's own Ray cluster."""
    pids = []
    for proc in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(proc, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        pid = int(proc.split("/")[2])
        if cmd.startswith(b"ray::nas_dil_trial") and _descends_from_us(pid):
            pids.append(pid)
    return pids


def wait_for(predicate: Any, timeout: float, every: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


# -- PostgreSQL --------------------------------------------------------------------------------

def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (skipped where PostgreSQL is absent)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh --dev installs Debian's "
                    "postgresql when run as root)")
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[dev]'")
    root = os.geteuid() == 0
    if root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run initdb as")
    tmp = Path(tempfile.mkdtemp(prefix="nas-dil-pg-"))
    data = tmp / "data"

    def as_pg(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        if root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    if root:
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    r = as_pg([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    if r.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"initdb failed: {r.stderr[-500:]}")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off"
    r = as_pg([pg_ctl, "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"])
    if r.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {r.stderr[-500:]}")
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE nasdil")
        yield f"postgresql://postgres@127.0.0.1:{port}/nasdil"
    finally:
        as_pg([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)
