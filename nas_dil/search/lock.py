"""One driver per study: a lock row in a small table of nas-dil's own, in the study's database.

Why a row in the database: the database is the one thing every driver of a study shares,
whether it is a local ``study.db`` or a PostgreSQL server reached from several machines (a
lock file would not be seen across machines; an advisory lock of PostgreSQL does not exist in
SQLite). The table, `TABLE`, holds one row per study: (study, host, pid, since, heartbeat,
token). Optuna never reads it.

- **Take**: an INSERT; the primary key makes it atomic. When a row is there, it is taken over
  only when its driver is known to be gone: a driver on *this* host whose pid no longer exists
  (a crash, ``kill -9``: ``--resume`` works at once), or, from any host, a heartbeat older
  than `STALE_S`. The take-over is a compare-and-set (``UPDATE … WHERE token = old``), so of
  two drivers taking over the same stale row one wins.
- **Hold**: a daemon thread refreshes ``heartbeat`` every `HEARTBEAT_S` (only while the token
  is still ours; if another driver took the row, `lost` is set and the loop stops).
- **Release**: the row is deleted when the search ends (normally, Ctrl-C or an error).

Times are the drivers' wall clocks (seconds since the epoch); hosts sharing a PostgreSQL study
need clocks within `STALE_S` of each other. A refused driver writes nothing at all.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nas_dil._proc import pid_alive
from nas_dil.search.storage import StorageError, _engine_kwargs, _reason, safe_url

__all__ = ["HEARTBEAT_S", "STALE_S", "TABLE", "DriverLock", "Holder", "StudyLocked"]

TABLE = "nas_dil_driver_lock"
HEARTBEAT_S = 5.0  # how often a driver refreshes its row
STALE_S = 60.0  # a row not refreshed for this long belongs to a driver that is gone


class StudyLocked(StorageError):
    """Another driver runs this study."""


@dataclass(frozen=True)
class Holder:
    """The driver a lock row names."""

    host: str
    pid: int
    since: float
    heartbeat: float
    token: str

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.since).astimezone().isoformat(timespec="seconds")
        return f"host {self.host}, pid {self.pid}, since {when}"


def _table(metadata: Any) -> Any:
    from sqlalchemy import Column, Float, Integer, String, Table

    return Table(TABLE, metadata,
                 Column("study", String(512), primary_key=True),
                 Column("host", String(255), nullable=False),
                 Column("pid", Integer, nullable=False),
                 Column("since", Float, nullable=False),
                 Column("heartbeat", Float, nullable=False),
                 Column("token", String(64), nullable=False))


class DriverLock:
    """The lock of study ``name`` in the database at ``url`` (see the module docstring)."""

    def __init__(self, url: str, name: str, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_s: float = STALE_S) -> None:
        self.url = url
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex
        self.lost = False
        self.held = False
        self._engine: Any = None
        self._table: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the table ------------------------------------------------------------------------------

    def _connect(self) -> None:
        import sqlalchemy

        if self._engine is not None:
            return
        from nas_dil.search.storage import _sqlite_file

        path = _sqlite_file(self.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._engine = sqlalchemy.create_engine(self.url, **_engine_kwargs(self.url))
            md = sqlalchemy.MetaData()
            self._table = _table(md)
            self._create_table()
        except Exception as e:
            self._dispose()
            raise StorageError(f"storage {safe_url(self.url)}: cannot take the driver lock: "
                               f"{_reason(e)}") from None

    def _create_table(self) -> None:
        """CREATE TABLE IF NOT EXISTS; drivers starting together may still collide on it
        (PostgreSQL's catalog, SQLite's check-then-create): then it exists, look again."""
        import sqlalchemy
        from sqlalchemy.schema import CreateTable

        for attempt in range(5):
            try:
                with self._engine.begin() as conn:
                    conn.execute(CreateTable(self._table, if_not_exists=True))
                return
            except sqlalchemy.exc.SQLAlchemyError:
                if sqlalchemy.inspect(self._engine).has_table(TABLE):
                    return
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None

    def holder(self) -> Holder | None:
        """The row of this study, or None."""
        from sqlalchemy import select

        self._connect()
        t = self._table
        with self._engine.connect() as conn:
            row = conn.execute(select(t.c.host, t.c.pid, t.c.since, t.c.heartbeat, t.c.token)
                               .where(t.c.study == self.name)).first()
        return Holder(str(row[0]), int(row[1]), float(row[2]), float(row[3]),
                      str(row[4])) if row else None

    def _gone(self, h: Holder, now: float) -> str | None:
        """Why the holder is known to be gone, or None when it may still run."""
        if h.token == self.token:
            return "ours"
        if h.host == self.host and h.pid != self.pid and not pid_alive(h.pid):
            return "its process is gone"
        if now - h.heartbeat > self.stale_s:
            return f"no heartbeat for {now - h.heartbeat:.0f} s"
        return None

    # -- take, hold, release -------------------------------------------------------------------

    def acquire(self) -> str | None:
        """Take the lock or raise `StudyLocked`; returns what was taken over (None: free)."""
        from sqlalchemy import exc, insert, update

        self._connect()
        t = self._table
        try:
            for _ in range(5):  # a row that vanishes or changes meanwhile: look again
                now = time.time()
                try:
                    with self._engine.begin() as conn:
                        conn.execute(insert(t).values(
                            study=self.name, host=self.host, pid=self.pid, since=now,
                            heartbeat=now, token=self.token))
                    self._start()
                    return None
                except exc.IntegrityError:
                    pass
                h = self.holder()
                if h is None:
                    continue
                why = self._gone(h, now)
                if why is None:
                    raise StudyLocked(
                        f"study {self.name!r} in {safe_url(self.url)} is being run by another "
                        f"driver ({h.describe()}); wait for it to end, or stop it (a driver "
                        f"that died on another host is taken over {self.stale_s:.0f} s after "
                        "its last heartbeat)")
                with self._engine.begin() as conn:
                    won = conn.execute(update(t).where(t.c.study == self.name,
                                                       t.c.token == h.token).values(
                        host=self.host, pid=self.pid, since=now, heartbeat=now,
                        token=self.token)).rowcount == 1
                if won:
                    self._start()
                    return f"{h.describe()}: {why}"
            raise StudyLocked(f"study {self.name!r} in {safe_url(self.url)}: the driver lock "
                              "keeps changing hands; try again")
        except StorageError:
            self._dispose()
            raise
        except Exception as e:  # a read-only file, a server gone
            self._dispose()
            raise StorageError(f"storage {safe_url(self.url)}: cannot take the driver lock: "
                               f"{_reason(e)}") from None

    def _start(self) -> None:
        self.held = True
        self._thread = threading.Thread(target=self._beat, name="nas-dil-lock", daemon=True)
        self._thread.start()

    def beat(self) -> bool:
        """Refresh the heartbeat; False (and `lost`) when the row is no longer ours."""
        from sqlalchemy import update

        t = self._table
        with self._engine.begin() as conn:
            n = conn.execute(update(t).where(t.c.study == self.name, t.c.token == self.token)
                             .values(heartbeat=time.time())).rowcount
        if n != 1:
            self.lost = True
        return not self.lost

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.beat():
                    return
            except Exception:  # a busy database or a network blip: try at the next beat
                continue

    def release(self) -> None:
        """Stop the heartbeat and delete the row (only ours); never raises."""
        from sqlalchemy import delete

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            if self.held and self._engine is not None:
                t = self._table
                with self._engine.begin() as conn:
                    conn.execute(delete(t).where(t.c.study == self.name,
                                                 t.c.token == self.token))
        except Exception:  # the row expires by its heartbeat
            pass
        finally:
            self.held = False
            self._dispose()
