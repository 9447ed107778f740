"""Ray: connecting (a local instance on 127.0.0.1, or a cluster: ``--address`` /
``RAY_ADDRESS``), and `TrialTasks`, the loop's trials as Ray tasks.

A local Ray binds to the loopback address only. Ray resolves "127.0.0.1" to the host's
routable address whenever multi-node clusters are enabled, so for local instances and
loopback addresses we switch that off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the switch
Ray itself uses on laptops); a real cluster address is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from nas_dil.errors import UserError, first_line

if TYPE_CHECKING:
    from nas_dil.search.config import ParallelConfig
    from nas_dil.search.records import TrialPayload

__all__ = ["Lost", "RayAddressError", "RayStartError", "TaskError", "TrialTasks",
           "check_resources", "connect", "disconnect", "feature_hosts", "loopback_only",
           "trial_request", "unfit"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROBE_TIMEOUT_S = 3.0
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37  # linux/prctl.h


class _Local:
    """The local Ray this process started: the processes below it before the start, and
    whether it was a subreaper then (restored when the instance stops)."""

    def __init__(self) -> None:
        self.before = _descendants()
        self.was_subreaper = _subreaper(True)


_local: _Local | None = None  # one Ray per process, as Ray itself keeps it


class RayAddressError(UserError, ConnectionError):
    """A Ray address that cannot be reached."""


class RayStartError(UserError, RuntimeError):
    """A local Ray that did not start (its start timed out on a loaded machine)."""


def loopback_only() -> None:
    """Keep Ray on 127.0.0.1 in this process and the processes it starts."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray._private.ray_constants as rc

    rc.ENABLE_RAY_CLUSTER = False  # read at call time by Ray's address resolution


def _host_port(address: str) -> tuple[str, int] | None:
    text = address.split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect(address: str | None, *, num_cpus: int | None = None,
            num_gpus: int | None = None) -> bool:
    """Connect this process to Ray; True when this call connected (then `disconnect` leaves,
    and stops a local instance started here).

    ``address``: None (``RAY_ADDRESS`` if set, else local), "local", "auto", host:port or
    ray://host:port.
    """
    import ray

    global _local
    if ray.is_initialized():  # a caller (a test, a notebook) connected already
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                             "include_dashboard": False}
    if address == "local":
        loopback_only()
        _quiet_token_notice()
        _local = local = _Local()
        try:
            _init(address="local", _node_ip_address="127.0.0.1", num_cpus=num_cpus,
                  num_gpus=num_gpus, **quiet)
        except BaseException as e:  # a bare Exception when its start times out; a stop
            ray.shutdown()
            _local = None
            _end_left(local, ray_only=False)  # a failed start is not known to ray.shutdown
            if not isinstance(e, Exception):  # Ctrl-C or SIGTERM while Ray started
                raise
            raise RayStartError(
                f"Ray could not start on this machine: {first_line(e, 200)} (a loaded machine "
                "starts slowly): run again, or start Ray once yourself (`ray start --head "
                "--node-ip-address 127.0.0.1`) and pass --address 127.0.0.1:6379") from None
        return True
    if address != "auto":
        hp = _host_port(address)
        if hp is None:
            raise RayAddressError(f"Ray address {address!r}: expected host:port, "
                                  "ray://host:port, auto or local")
        if hp[0] in _LOOPBACK:
            loopback_only()
        try:
            with socket.create_connection(hp, timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as e:
            raise RayAddressError(f"Ray address {address}: cannot connect "
                                  f"({e.strerror or e})") from None
    quiet.pop("include_dashboard")  # only for a new instance
    try:
        _init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        text = first_line(e, 200)
        raise RayAddressError(f"Ray address {address}: {text}") from None
    return True


class _TokenNotice(logging.Filter):
    """Drops Ray's (>= 2.5x) notice that it turned token authentication on for a new local
    instance, printed at WARNING by every start: for a loopback instance of this process
    alone it is news to no one. Ray's warning that authentication is off stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled")


def _quiet_token_notice() -> None:
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _TokenNotice) for f in log.filters):
        log.addFilter(_TokenNotice())


def _subreaper(on: bool) -> bool:
    """Make this process the subreaper of what it starts (Linux; elsewhere a no-op), and say
    whether it was one. Why: the raylet's agents share its fate only once their own start is
    done (a pipe they then read); a raylet that ends before that, killed when its 1 s grace
    at ``ray.shutdown`` runs out on a loaded machine, orphans an agent that then waits on the
    GCS, gone too. As a subreaper, such an orphan stays below this process, to be ended."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        was = ctypes.c_int(0)
        prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
        prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl
        return False
    return bool(was.value)


def _end_left(local: _Local, *, ray_only: bool) -> None:
    """End (SIGKILL) and reap what a local Ray left below this process, then restore the
    subreaper flag. ``ray_only``: only Ray's processes (what this process started for itself
    meanwhile, a data loader's forkserver, is left alone); else every process that was not
    below it before the start (a start that failed)."""
    for _ in range(2):  # a process being ended may still start one
        left = {pid for pid in _descendants() - local.before
                if not ray_only or _is_ray(pid)}
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap(left)
    _subreaper(local.was_subreaper)


def _is_ray(pid: int) -> bool:
    """Whether ``pid`` is one of Ray's processes: its binaries and scripts live under the ray
    package; its workers and agents rename themselves ``ray::…`` (a zombie keeps that name)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            comm = f.read().split(b"(", 1)[1].rsplit(b")", 1)[0]
    except (OSError, IndexError):
        return False
    return b"/ray/" in cmd or cmd.startswith(b"ray::") or comm.startswith(b"ray::")


def _reap(pids: set[int], within: float = 2.0) -> None:
    """Wait for the ``pids`` that are this process's children (orphans it adopted as a
    subreaper) so none stays a zombie; the others are not its to wait for."""
    todo, deadline = set(pids), time.monotonic() + within
    while todo:
        for pid in list(todo):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    todo.discard(pid)
            except ChildProcessError:  # not a child of this process, or reaped already
                todo.discard(pid)
        if todo and time.monotonic() < deadline:
            time.sleep(0.02)
        elif todo:
            return


def _descendants() -> set[int]:
    """Pids of the processes below this one (Linux: /proc; elsewhere none). A local Ray
    that fails to start is not known to ``ray.shutdown``: its GCS, raylet and their agents
    are found here, as the processes that were not below this one before the start."""
    children: dict[int, list[int]] = {}
    try:
        stats = os.listdir("/proc")
    except OSError:
        return set()
    for name in stats:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = set(), [os.getpid()]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _init(**kw: Any) -> None:
    """``ray.init`` that leaves this process's SIGINT/SIGTERM to it (the search stops on
    them: one line, exit 130). Ray sets SIGTERM to ``sys.exit`` while it starts, and its C++
    failure handler dumps a stack on SIGTERM, then aborts; the driver keeps that handler for
    real crashes (SIGSEGV, SIGABRT) but not for SIGTERM, restored as it was here."""
    import ray

    main = threading.current_thread() is threading.main_thread()
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        ray.init(**kw)
    except SystemExit as e:  # Ray's own SIGTERM handler, while it started: a stop
        if e.code != signal.SIGTERM:
            raise
        ray.shutdown()
        raise KeyboardInterrupt from None
    finally:
        for s, h in kept.items():
            if h is not None:
                signal.signal(s, h)


def disconnect(connected_here: bool) -> None:
    """Leave Ray if `connect` joined it; a local instance started there stops with it, and
    with it every Ray process it left (an agent orphaned mid-start, see `_subreaper`)."""
    import ray

    global _local
    if connected_here and ray.is_initialized():
        # a local instance: its autoscaler monitor answers SIGTERM by reporting to the GCS,
        # which `ray.shutdown` stops first, and so is killed only after a 1 s wait (1.5 s of
        # a 1.9 s shutdown, measured); it has nothing to save
        node = getattr(ray._private.worker, "_global_node", None)
        for info in (getattr(node, "all_processes", None) or {}).get("monitor", []):
            with contextlib.suppress(OSError, AttributeError):
                info.process.kill()
        ray.shutdown()
    if connected_here and _local is not None:
        local, _local = _local, None
        _end_left(local, ray_only=True)


def trial_request(parallel: ParallelConfig) -> dict[str, float]:
    """What one trial asks of a node, in Ray's resource names (memory in bytes); zeros left
    out."""
    need = {"CPU": float(parallel.cpus), "GPU": float(parallel.gpus),
            "memory": float(parallel.memory_gb or 0) * 2**30, **{
                k: float(v) for k, v in parallel.resources.items()}}
    return {k: v for k, v in need.items() if v > 0}


def unfit(parallel: ParallelConfig) -> str | None:
    """Why no live node of the cluster can fit one trial's request (None: some node can),
    in the study file's words."""
    import ray

    need = trial_request(parallel)
    if not need:
        return None
    nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
    if any(all(float(r.get(k, 0)) >= v for k, v in need.items()) for r in nodes):
        return None

    def fmt(k: str, v: float) -> str:
        if k == "memory":
            return f"memory_gb {v / 2**30:g}"
        return f"{ {'CPU': 'cpus', 'GPU': 'gpus'}.get(k, k)} {v:g}"

    asked = ", ".join(fmt(k, v) for k, v in need.items())
    most = ", ".join(fmt(k, max((float(r.get(k, 0)) for r in nodes), default=0.0))
                     for k in need)
    return (f"[parallel] asks {asked} per trial, which no node of the Ray cluster "
            f"({len(nodes)} node(s)) can fit; the most a node has: {most}")


def check_resources(parallel: ParallelConfig, where: str) -> None:
    """Refuse a trial request no live node of the cluster can ever fit (a GPU on a CPU-only
    cluster, more CPUs than any node has): it would wait forever. One line (`unfit`)."""
    why = unfit(parallel)
    if why is not None:
        raise UserError(f"{where}: {why}")


def feature_hosts(nodes: list[dict[str, Any]], driver_node: str
                  ) -> list[tuple[str, str, bool]]:
    """(node id, host address, has a GPU) of one alive node with a CPU per host other than
    the driver's (``nodes``: ``ray.nodes()``): each host keeps its own copy of a feature
    cache, and the driver builds its own host's."""
    alive = [n for n in nodes if n.get("Alive")]
    mine = {n.get("NodeManagerAddress") for n in alive if n.get("NodeID") == driver_node}
    out: dict[str, tuple[str, str, bool]] = {}
    for n in alive:
        res, host = n.get("Resources") or {}, n.get("NodeManagerAddress")
        if host in mine or res.get("CPU", 0) < 1 or not isinstance(host, str):
            continue
        has_gpu = res.get("GPU", 0) >= 1
        if host not in out or (has_gpu and not out[host][2]):  # a GPU node where there is one
            out[host] = (str(n["NodeID"]), host, has_gpu)
    return sorted(out.values(), key=lambda t: t[1])


class TaskError(Exception):
    """A task that raised: ``kind`` is the exception's type name, ``text`` its first line."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f"{kind}: {text}")
        self.kind = kind
        self.text = text


class Lost(TaskError):
    """A task whose worker or node died (a Ray system error): worth a retry."""


class TrialTasks:
    """The Ray side of the search loop: trials submitted as tasks with the study's resources,
    waited on, fetched, cancelled. A task's own exception comes back as `TaskError`, a lost
    worker as `Lost`."""

    def __init__(self, parallel: ParallelConfig) -> None:
        import ray

        from nas_dil.search.worker import build_features, describe_data, nas_dil_trial

        self.options: dict[str, Any] = {"num_cpus": parallel.cpus, "num_gpus": parallel.gpus,
                                        "max_retries": 0, "retry_exceptions": False}
        if parallel.memory_gb:
            self.options["memory"] = int(parallel.memory_gb * 2**30)
        if parallel.resources:
            self.options["resources"] = dict(parallel.resources)
        self._trial = ray.remote(nas_dil_trial)
        self._describe = ray.remote(describe_data)
        self._features = ray.remote(build_features)

    def describe_data(self, data: dict[str, Any], device: str) -> dict[str, Any]:
        """`worker.describe_data` where trials run (a failure: `TaskError`)."""
        opts = {k: v for k, v in self.options.items() if k != "retry_exceptions"}
        ref = self._describe.options(**{**opts, "max_retries": 1}).remote(data, device)
        info: dict[str, Any] = self.get(ref)
        return info

    def build_features(self, request: dict[str, Any]) -> list[tuple[str, Any]]:
        """A feature-cache build (`worker.build_features`) on one node of every other host
        than the driver's (`feature_hosts`: the driver's build serves its own host), a GPU
        taken where the node has one; (host, ticket) each."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        out = []
        for node_id, host, gpu in feature_hosts(ray.nodes(),
                                                ray.get_runtime_context().get_node_id()):
            opts = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_retries": 0,
                    "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}
            out.append((host, self._features.options(**opts).remote(request)))
        return out

    def submit(self, payload: TrialPayload) -> Any:
        return self._trial.options(**self.options).remote(payload)

    def wait(self, tickets: list[Any], timeout: float) -> list[Any]:
        """The tickets finished within ``timeout`` (all that are done once one is)."""
        import ray

        ready, _ = ray.wait(tickets, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(tickets, num_returns=len(tickets), timeout=0)
        return list(ready)

    def get(self, ticket: Any) -> Any:
        import ray

        try:
            return ray.get(ticket)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            raise TaskError(type(cause).__name__, first_line(cause)) from None
        except ray.exceptions.RayError as e:
            raise Lost(type(e).__name__, first_line(e)) from None

    def cancel(self, tickets: list[Any]) -> None:
        import ray

        for ref in tickets:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or gone: nothing to cancel
                pass
