"""The README's "Running on a cluster", rehearsed on a real multi-process Ray cluster
(docs/cluster.md), and the cluster templates checked against the README's command line.

The rehearsal starts a Ray head and a worker node as separate `ray start --block` processes on
loopback addresses, a throw-away PostgreSQL (conftest.postgres_url), and submits searches with
the README's own `ray job submit` line: first 4 tiny real training trials (torch on both nodes,
weights back to the driver), then a study of sleep trials during which it reads the report from
another process and SIGKILLs every process of the worker node; the trials the worker node lost
run again on the head, nothing completed is lost. Every process it starts
carries a marker in its environment (`NAS_DIL_REHEARSAL=<run>-<role>`, inherited by everything
Ray starts below it), so the test finds, stops and counts exactly its own processes.

Why not 127.0.0.1: Ray (2.60) rewrites a node address of 127.0.0.1 into the host's routable
address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with that switch `ray start --address`
refuses to join a cluster. Other loopback addresses are kept as given, so the head is 127.0.0.2
and the worker 127.0.0.3: every connection stays on the loopback interface.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.search.conftest import REPO, wait_for

README = REPO / "README.md"
TEMPLATES = REPO / "scripts" / "cluster"
MARK = "NAS_DIL_REHEARSAL"
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
STARTUP_S = 240  # `ray start` under a loaded 2-core CI machine takes 30-90 s
SEARCH_S = 420


# -- the README's command lines ------------------------------------------------------------------

def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined (in comments too: '#   a \\' + '#   b')."""
    return re.sub(r"\\\n\s*(#\s*)?", " ", text).splitlines()


def readme_cluster_block() -> list[str]:
    """The bash block of README's "Running on a cluster", as logical lines."""
    section = README.read_text().split("### Running on a cluster", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no bash block under 'Running on a cluster'"
    return _logical_lines(block.group(1))


OPTIONS_WITH_VALUE = {"--address", "--storage", "--n-trials", "--out"}


def search_command(line: str) -> tuple[str, dict[str, str | None]]:
    """(study file name, {option: value}) of the `nas-dil search` call in one shell line."""
    line = re.sub(r"\$\{\w+:\+(.*?)\}", r"\1", line)  # ${X:+--opt "$X"}: the option, when set
    m = re.search(r"\S*nas-dil[\"']?\s+search\s+(.*)", line)
    assert m, line
    words = [w.strip("\"'") for w in m.group(1).split()]
    words = words[:next((i for i, w in enumerate(words) if w in ("&", "#", ";")), len(words))]
    study, opts, i = words[0], {}, 1
    while i < len(words):
        assert words[i].startswith("--"), (words[i], line)
        takes = words[i] in OPTIONS_WITH_VALUE
        opts[words[i]] = words[i + 1] if takes else None
        i += 2 if takes else 1
    return Path(study).name, opts


def readme_search() -> tuple[str, dict[str, str | None]]:
    return search_command(next(x for x in readme_cluster_block() if "nas-dil search" in x))


# -- the templates -------------------------------------------------------------------------------

def _search_lines(path: Path) -> list[str]:
    return [x for x in _logical_lines(path.read_text())
            if re.search(r"nas-dil\S*\s+search\s+\S*(\.toml|STUDY)", x)]


def _same_search(study: str, opts: dict[str, str | None], where: str) -> None:
    want_study, want = readme_search()
    assert study == want_study, (where, study, want_study)
    assert opts.get("--address") == want["--address"] == "auto", (where, opts)
    assert set(want) <= set(opts), (where, sorted(want), sorted(opts))
    assert opts["--storage"], where


def test_readme_command_is_the_one_rehearsed() -> None:
    study, opts = readme_search()
    assert study == "cluster_pg.toml" and opts == {"--address": "auto",
                                                    "--storage": "$NAS_DIL_STORAGE"}
    assert (REPO / "studies" / study).is_file()


@pytest.mark.parametrize("name", ["rayjob.yaml", "ray-cluster.yaml"])
def test_yaml_templates_parse_and_carry_the_readme_command(name: str) -> None:
    import yaml

    path = TEMPLATES / name
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    # the usage lines in comments; the YAML values are read from the parsed document
    lines = [x for x in _search_lines(path) if x.lstrip().startswith("#")]
    if name == "rayjob.yaml":
        assert doc["kind"] == "RayJob"
        lines.append(doc["spec"]["entrypoint"])
        # the entrypoint runs on the head (KubeRay submits it there): the head needs the URL
        head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        env = {e["name"] for c in head["containers"] for e in c.get("env", [])}
        assert "NAS_DIL_STORAGE" in env
    else:
        assert doc["provider"] and doc["head_start_ray_commands"] and lines
        assert all("nas-dil/.venv/bin/ray" in c for c in
                   doc["head_start_ray_commands"] + doc["worker_start_ray_commands"])
    for line in lines:
        _same_search(*search_command(line), f"{name}: {line.strip()}")


def test_slurm_template_is_valid_bash_and_carries_the_readme_command() -> None:
    path = TEMPLATES / "slurm.sbatch"
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    lines = [x for x in _search_lines(path) if not x.lstrip().startswith("#")]
    assert len(lines) == 1, lines  # one driver
    study, opts = search_command(lines[0].replace('"$STUDY"', "cluster_pg.toml"))
    _same_search(study, opts, "slurm.sbatch")
    assert 'STUDY="${1:-studies/cluster_pg.toml}"' in text
    assert "--block" in text and "RAY_AUTH_TOKEN" in text


def test_slurm_template_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (scripts/setup.sh --dev installs Debian's)")
    r = subprocess.run([shellcheck, "-s", "bash", str(TEMPLATES / "slurm.sbatch")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# -- our own processes ---------------------------------------------------------------------------

def marked(run: str, role: str = "", sessions: tuple[int, ...] = ()) -> list[int]:
    """Pids of live processes whose environment carries this run's marker (and role), or that
    belong to one of ``sessions`` (the sessions the test started: a check on the marker)."""
    needle = f"{MARK}={run}-{role}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if stat[0] == b"Z":  # a zombie: already dead, waiting for its parent
            continue
        if any(v.startswith(needle) for v in env.split(b"\0")) or int(stat[3]) in sessions:
            pids.append(int(entry))
    return pids


def kill_all(run: str, role: str = "", sessions: tuple[int, ...] = (),
             timeout: float = 30) -> None:
    """SIGKILL every process of this run (and role) until none is left."""
    def gone() -> bool:
        pids = marked(run, role, sessions)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return not pids

    wait_for(gone, timeout, every=0.5)


_HANDED_OUT: set[int] = set()  # ports given by earlier calls: closed, so free to the OS again


def free_ports(n: int) -> list[int]:
    """Ports free on every address (Ray's GCS and raylets listen on all of them), none given
    by an earlier call of this process: the OS may hand a port it just saw closed to the next
    bind, and Ray refuses a node whose components share a port (seen in CI: the client
    server's port came back as the runtime-env agent's)."""
    got: list[int] = []
    while len(got) < n:
        socks = [socket.socket() for _ in range(n - len(got))]
        try:
            for s in socks:
                s.bind(("", 0))
            fresh = {int(s.getsockname()[1]) for s in socks} - _HANDED_OUT - set(got)
        finally:
            for s in socks:
                s.close()
        got += sorted(fresh)
    _HANDED_OUT.update(got)
    return got


class Rehearsal:
    """A head and a worker node started with `ray start --block`, each its own session."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(6)
        # short: Ray's socket paths (<temp>/session_<date>_<pid>/sockets/...) must fit 107 bytes
        self.tmp = Path(tempfile.mkdtemp(prefix="ndr-", dir="/tmp"))
        self.bin = REPO / ".venv" / "bin"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")
               and not k.startswith("PYTEST")}
        # Ray >= 2.5x authenticates nodes and clients with a token once ~/.ray/auth_token
        # exists; a token of our own in the environment keeps ~/.ray out of it
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                   RAY_USAGE_STATS_ENABLED="0", PATH=f"{self.bin}{os.pathsep}{env['PATH']}")
        self.env = env
        self.gcs, self.dashboard, self.client = free_ports(3)

    def sessions(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.procs.values())  # each started a session

    def left(self) -> list[int]:
        """Our processes still alive: by marker or by session."""
        return marked(self.run, sessions=self.sessions())

    def env_for(self, role: str, **extra: str) -> dict[str, str]:
        return {**self.env, MARK: f"{self.run}-{role}", **extra}

    def _node_args(self, ip: str, cpus: int, temp: str) -> list[str]:
        p = free_ports(22)
        (self.tmp / temp).mkdir()
        return ["--block", "--node-ip-address", ip, "--num-cpus", str(cpus), "--num-gpus", "0",
                "--temp-dir", str(self.tmp / temp), "--disable-usage-stats",
                "--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
                "--dashboard-agent-listen-port", str(p[2]),
                "--dashboard-agent-grpc-port", str(p[3]), "--runtime-env-agent-port", str(p[4]),
                "--metrics-export-port", str(p[5]),
                "--worker-port-list", ",".join(map(str, p[6:]))]

    def _start(self, role: str, args: list[str]) -> None:
        log = open(self.tmp / f"{role}.log", "wb")
        self.procs[role] = subprocess.Popen(
            [str(self.bin / "ray"), "start", *args], env=self.env_for(role),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # Ray's reaper kills its process group: never ours
        log.close()

    def start_head(self, cpus: int) -> None:
        self._start("head", ["--head", "--port", str(self.gcs), "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(self.dashboard), "--include-dashboard",
                             "true", "--ray-client-server-port", str(self.client),
                             *self._node_args(HEAD_IP, cpus, "h")])

    def start_worker(self, cpus: int) -> None:
        self._start("worker", ["--address", f"{HEAD_IP}:{self.gcs}",
                               *self._node_args(WORKER_IP, cpus, "w")])

    def log(self, role: str) -> str:
        path = self.tmp / f"{role}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def alive_nodes(self) -> int:
        r = subprocess.run([str(self.bin / "ray"), "list", "nodes", "--address",
                            f"{HEAD_IP}:{self.gcs}", "--filter", "state=ALIVE", "--format",
                            "json"], env=self.env_for("client"), capture_output=True, text=True,
                           timeout=120)
        listed = r.stdout.strip()  # "No resource in the cluster" before the first node
        return len(json.loads(listed)) if r.returncode == 0 and listed.startswith("[") else 0

    def wait_nodes(self, n: int) -> None:
        def ready() -> bool:
            for role, p in self.procs.items():
                assert p.poll() is None, f"ray start ({role}) exited:\n{self.log(role)}"
            return self.alive_nodes() == n

        wait_for(ready, STARTUP_S, every=2)

    def shutdown(self) -> None:
        """`ray start --block` stops its node on SIGTERM; what is left after that is killed."""
        for role in ("worker", "head"):
            p = self.procs.get(role)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 60
        while self.left() and time.monotonic() < end:
            time.sleep(0.5)
        kill_all(self.run, sessions=self.sessions())
        for p in self.procs.values():
            p.wait(30)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def rehearsal() -> Iterator[Rehearsal]:
    if not (REPO / ".venv" / "bin" / "nas-dil").exists():
        pytest.skip("the README's commands run .venv/bin/nas-dil: run scripts/setup.sh first")
    r = Rehearsal()
    assert not marked(r.run)
    try:
        yield r
    finally:
        r.shutdown()
        assert not r.left(), "processes left behind"


REHEARSAL_STUDY = """
name = "rehearsal"
space = "hdc"
n_trials = {n}
seed = 0
out = "{out}"
[trial]
kind = "sleep"  # orchestration only: a real trial's cost would add nothing here
sleep_s = 5
evals = 3
[parallel]
max_in_flight = 3
cpus = 1
max_retries = 2
[early_stop]
enabled = false  # every trial runs to the end: the study's content is then exact
[noise]
baseline_seeds = 1  # one seed per baseline, no confirmation: the counts below
[confirm]
seeds = 0
"""

TINY_STUDY = """
name = "tiny"
space = "exponential"
n_trials = 4
seed = 0
out = "{out}"
[constraints]
allow_dead_taps = true  # 16-px crops: rates >= 2 are dead; not what this tests
[parallel]
max_in_flight = 3
cpus = 1
[data]
image_size = 16
n_train = 8
n_val = 4
[train]
steps = 4
eval_every_steps = 2
batch_size = 4
threads = 1
[early_stop]
enabled = false
[noise]
baseline_seeds = 1  # one seed per baseline, no confirmation: the counts below
[confirm]
seeds = 0
"""


def readme_lines(r: Rehearsal, study: Path, report_out: Path) -> tuple[str, str]:
    """The README's submit and report lines, with this rehearsal's dashboard port, checkout,
    study file and report folder substituted (nothing else)."""
    lines = readme_cluster_block()
    submit = next(x for x in lines if "ray job submit" in x)
    report = next(x for x in lines if "nas-dil report" in x)
    subs = [("127.0.0.1:8265", f"127.0.0.1:{r.dashboard}"), ("~/nas-dil", shlex.quote(str(REPO))),
            ("studies/cluster_pg.toml", str(study)), ("--study cluster_pg", "--study rehearsal"),
            ("cluster_pg_report", str(report_out))]
    for old, new in subs:
        assert old in submit + report, old
        submit, report = submit.replace(old, new), report.replace(old, new)
    return submit, report.split("#", 1)[0] + " --json"


@pytest.mark.slow
def test_rehearsal_on_a_multi_process_cluster(rehearsal: Rehearsal, postgres_url: str) -> None:
    import optuna
    from optuna.trial import TrialState

    r, n_trials = rehearsal, 8
    t0 = time.monotonic()
    study_file = r.tmp / "rehearsal.toml"
    study_file.write_text(REHEARSAL_STUDY.format(n=n_trials, out=r.tmp / "out"))
    r.start_head(cpus=1)  # the head runs trials too: where the worker's trials go again
    r.wait_nodes(1)
    r.start_worker(cpus=2)
    r.wait_nodes(2)
    started = time.monotonic() - t0

    def submit(study: Path, log: Path) -> subprocess.Popen[bytes]:
        line, _ = readme_lines(r, study, r.tmp / "report")
        with open(log, "wb") as f:
            return subprocess.Popen(["bash", "-c", line], cwd=REPO, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=r.env_for("client", NAS_DIL_STORAGE=postgres_url))

    # 1. a few real (tiny) training trials: torch on both nodes, weights back to the driver
    tiny = r.tmp / "tiny.toml"
    tiny.write_text(TINY_STUDY.format(out=r.tmp / "tiny"))
    job = submit(tiny, r.tmp / "tiny.log")
    try:
        job.wait(SEARCH_S)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    text = (r.tmp / "tiny.log").read_text(errors="replace")
    assert job.returncode == 0 and "study tiny: 4/4 trials" in text, text[-3000:]
    real = optuna.load_study(study_name="tiny", storage=postgres_url).trials
    assert all(t.state == TrialState.COMPLETE for t in real) and len(real) == 4
    assert {t.user_attrs["node_ip"] for t in real} == {HEAD_IP, WORKER_IP}
    kept_weights = [r.tmp / "tiny" / t.user_attrs["weights"] for t in real
                    if t.user_attrs.get("weights")]
    assert kept_weights and all(w.stat().st_size > 0 for w in kept_weights)
    tiny_done = time.monotonic() - t0

    # 2. the orchestration rehearsal: the worker node dies mid-search
    _, report = readme_lines(r, study_file, r.tmp / "report")
    job = submit(study_file, r.tmp / "job.log")

    def job_text() -> str:
        return (r.tmp / "job.log").read_text(errors="replace")

    def trials() -> list[Any]:
        try:
            return optuna.load_study(study_name="rehearsal", storage=postgres_url).trials
        except KeyError:  # not created yet
            return []

    def completed() -> dict[int, Any]:
        return {t.number: t.values for t in trials() if t.state == TrialState.COMPLETE}

    def on_worker() -> list[int]:
        return [p for p in marked(r.run, "worker") if _title(p).startswith("ray::nas_dil_trial")]

    try:
        def worker_completed_one() -> bool:
            assert job.poll() is None, f"job ended early:\n{job_text()[-3000:]}"
            return any(t.state == TrialState.COMPLETE and t.user_attrs.get("node_ip")
                       == WORKER_IP for t in trials())

        wait_for(worker_completed_one, SEARCH_S, every=0.5)
        # the report, read by another process while the search runs
        reader = subprocess.Popen(["bash", "-c", report], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=r.env_for("client", NAS_DIL_STORAGE=postgres_url))
        wait_for(on_worker, SEARCH_S, every=0.2)
        before = completed()
        # the worker node dies: its `ray start`, raylet, agents, trial workers, all at once
        kill_all(r.run, "worker", sessions=(r.procs["worker"].pid,))
        killed_at = time.monotonic() - t0
        out, err = reader.communicate(timeout=SEARCH_S)
        assert reader.returncode == 0, err
        shown = json.loads(out)
        assert shown["study"] == "rehearsal" and shown["states"].get("COMPLETE", 0) >= 1
        assert shown["pareto"] and shown["states"].get("RUNNING", 0) >= 1  # read mid-search
        assert Path(shown["files"]["html"]).is_file()
        job.wait(SEARCH_S)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    text = job_text()
    assert job.returncode == 0, text[-3000:]
    assert re.search(r"Job '\S+' succeeded", text), text[-3000:]
    assert f"study rehearsal: {n_trials}/{n_trials} trials" in text, text[-3000:]

    final = trials()
    assert not [t for t in final if t.state == TrialState.RUNNING]
    done = [t for t in final if t.state.is_finished() and not t.user_attrs.get("requeue")]
    assert len(done) == n_trials and all(t.state == TrialState.COMPLETE for t in done), [
        (t.number, t.state.name, t.user_attrs.get("fail_reason"), t.user_attrs.get("retries"))
        for t in final]
    for number, values in before.items():  # nothing completed before the loss is lost
        assert final[number].state == TrialState.COMPLETE and final[number].values == values
    moved = [t for t in final if t.user_attrs.get("retries", 0) >= 1]
    assert moved, [(t.number, t.user_attrs.get("node_ip")) for t in final]
    for t in moved:  # the worker node's trials ran again on the head
        assert t.state == TrialState.COMPLETE and t.user_attrs["node_ip"] == HEAD_IP
    kept = [n for n in before if final[n].user_attrs["node_ip"] == WORKER_IP]
    assert kept  # trials the lost node completed are in the study, unchanged
    print(f"rehearsal: cluster up in {started:.0f} s, 4 real trials done at {tiny_done:.0f} s, "
          f"worker killed at {killed_at:.0f} s, "
          f"search done at {time.monotonic() - t0:.0f} s; {len(moved)} trial(s) moved, "
          f"{len(before)} completed before the loss ({len(kept)} on the worker)")


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _node(node_id: str, host: str, cpu: float = 2, gpu: float = 0, alive: bool = True
          ) -> dict[str, object]:
    return {"NodeID": node_id, "NodeManagerAddress": host, "Alive": alive,
            "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}


@pytest.mark.parametrize(("nodes", "expected"), [
    # one host (a local Ray, the test clusters): the driver's build serves it
    ([_node("d", "10.0.0.1"), _node("w", "10.0.0.1")], []),
    # another host: one task there
    ([_node("d", "10.0.0.1"), _node("w", "10.0.0.2")], [("w", "10.0.0.2", False)]),
    # two nodes on one other host: one task, on the node with a GPU
    ([_node("d", "10.0.0.1"), _node("a", "10.0.0.2"), _node("b", "10.0.0.2", gpu=1)],
     [("b", "10.0.0.2", True)]),
    # dead nodes and nodes without a CPU get none
    ([_node("d", "10.0.0.1"), _node("x", "10.0.0.3", alive=False),
      _node("y", "10.0.0.4", cpu=0)], []),
])
def test_feature_caches_are_built_once_per_other_host(nodes: list[dict[str, object]],
                                                      expected: list[tuple[str, str, bool]]
                                                      ) -> None:
    from nas_dil.search.cluster import feature_hosts

    assert feature_hosts(nodes, "d") == expected
