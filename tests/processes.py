"""Finding the processes a test started, by a marker in their environment: everything below a
process inherits it, so a test sees exactly its own processes (reparented to init or not)
and never another session's."""

from __future__ import annotations

MARK = "NAS_DIL_TEST_RUN"  # the environment variable a test sets to a fresh random value


def marked_processes(mark: str) -> dict[int, bytes]:
    """pid -> command line of every live process whose environment carries ``MARK=mark``
    (the process a test started and everything below it, reparented or not; zombies, which
    have exited and only wait to be reaped, are left out)."""
    import glob

    found = {}
    for env in glob.glob("/proc/[0-9]*/environ"):
        pid = int(env.split("/")[2])
        try:
            with open(env, "rb") as f:
                if f"{MARK}={mark}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[pid] = f.read()
        except OSError:  # ended while we looked
            continue
    return found


def descendants(pid: int) -> dict[int, bytes]:
    """pid -> command line of every live process below ``pid`` (its children, theirs, …)."""
    import os

    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(name))
    found: dict[int, bytes] = {}
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            try:
                with open(f"/proc/{c}/cmdline", "rb") as f:
                    found[c] = f.read()
            except OSError:
                continue
            todo.append(c)
    return found


def ppid(pid: int) -> int | None:
    """The parent of ``pid`` (a zombie's too); None once it has been reaped (or never was)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def alive(pids: object) -> list[int]:
    """Those of ``pids`` that still run (zombies count as ended)."""
    out = []
    for pid in pids:  # type: ignore[attr-defined]
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(pid)
        except OSError:
            continue
    return out
