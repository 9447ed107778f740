"""The study's storage: SQLite under the output folder by default, or any SQLAlchemy URL.

Checks happen before anything is written: an unreachable server, a file that is not a
database, a study of the same name with other objectives or another config all raise a
one-line `StorageError` and leave every study as it was.

SQLite: while a search runs, the driver's connection uses the WAL journal with
``synchronous = NORMAL`` (`open_storage`): a commit is an append to ``study.db-wal`` instead
of an fsync'd rollback journal (~25 commits per trial), and a reader (the dashboard, a
report) never blocks the driver. The driver is the only writer; a crash keeps the database
consistent (at worst the last commits are lost on power failure, and those trials are
rerun). `close_storage` folds the WAL back and returns the file to the rollback journal, so
a finished ``study.db`` is one self-contained file, as before, that read-only tools open
anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_dil.errors import UserError, first_line
from nas_dil.search.records import META_KEY, STORAGE_FILE, stored_meta

__all__ = ["META_KEY", "STORAGE_FILE", "StorageError", "check_storage", "close_storage",
           "default_url", "open_storage", "read_meta", "safe_url"]

CONNECT_TIMEOUT_S = 5


class StorageError(UserError, ValueError):
    """A storage that cannot be used; the message names it (password hidden)."""


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / STORAGE_FILE).resolve()}"


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    rest = rest.split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith(("postgresql", "postgres")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if url.startswith("mysql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}  # wait for a reader's lock, not fail
    return {}


def _reason(e: BaseException) -> str:
    return first_line(getattr(e, "orig", None) or e, 160)


def check_storage(url: str) -> None:
    """Raise StorageError unless ``url`` can be connected to (writes nothing)."""
    import sqlalchemy

    path = _sqlite_file(url)
    if path is not None:
        if path.is_dir():
            raise StorageError(f"storage {url}: is a folder, not a file")
        if path.exists():
            with path.open("rb") as f:
                head = f.read(16)
            if head and head != b"SQLite format 3\x00":
                raise StorageError(f"storage {url}: not an SQLite database")
        return
    try:
        engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    except ModuleNotFoundError as e:  # the dialect's driver
        hint = " (pip install 'nas-dil[postgres]')" if url.startswith("postgres") else ""
        raise StorageError(f"storage {safe_url(url)}: database driver missing: {e.name}"
                           f"{hint}") from None
    except Exception as e:  # unknown dialect, malformed URL
        raise StorageError(f"storage {safe_url(url)}: {_reason(e)}") from None
    try:
        with engine.connect():
            pass
    except Exception as e:
        raise StorageError(f"storage {safe_url(url)}: cannot connect: {_reason(e)}") from None
    finally:
        engine.dispose()


def _writer_pragmas(dbapi_conn: Any, record: Any) -> None:
    """On each new connection of the driver's engine: WAL journal, NORMAL sync (see the
    module docstring). A file system without WAL support keeps its journal: never an error."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    except Exception:  # locked by a rollback-mode reader past the timeout, odd file systems
        pass
    finally:
        cur.close()


def open_storage(url: str, create: bool = True) -> Any:
    """Optuna's RDBStorage for ``url`` (tables created when ``create``); for an SQLite file,
    the driver's connections get `_writer_pragmas` (undo with `close_storage`)."""
    import optuna
    from sqlalchemy import event

    path = _sqlite_file(url)
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                             skip_table_creation=not create)
    except Exception as e:
        raise StorageError(f"storage {safe_url(url)}: {_reason(e)}") from None
    if path is not None:
        event.listen(storage.engine, "connect", _writer_pragmas)
        storage.engine.dispose()  # the connections made while opening predate the listener
    return storage


CHECKPOINT_S = 30.0  # how long close_storage waits for readers to let the WAL be folded back


def close_storage(storage: Any) -> None:
    """Close the driver's storage. SQLite: fold the WAL into the file (a TRUNCATE checkpoint,
    retried while a reader is mid-read, up to `CHECKPOINT_S`), so ``study.db`` alone holds
    every trial whatever readers do, then return it to the rollback journal. Where a reader
    still has the file open the mode cannot change: it stays WAL (any SQLite ≥ 3.7 opens it,
    and the ``-wal`` file is empty) and nothing fails."""
    import time

    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    if engine is None:
        return
    try:
        if engine.name == "sqlite" and _sqlite_file(str(engine.url)) is not None:
            from sqlalchemy import text

            backend.remove_session()
            engine.dispose()  # the pool's other connections would keep the mode from changing
            with engine.connect() as conn:
                conn.execute(text("PRAGMA busy_timeout=2000"))  # not the 30 s of the writes
                end = time.monotonic() + CHECKPOINT_S
                while True:
                    busy = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).fetchone()
                    if not busy or not busy[0] or time.monotonic() > end:
                        break
                    time.sleep(0.1)  # a reader is mid-read: it ends in milliseconds
                try:
                    conn.execute(text("PRAGMA journal_mode=DELETE"))
                except Exception:  # a reader has the file open: WAL stays (folded, empty)
                    pass
    except Exception:  # the data is committed either way
        pass
    finally:
        engine.dispose()


def read_meta(url: str, name: str) -> tuple[bool, dict[str, Any] | None, list[str]]:
    """(study exists, its nas_dil attr or None, its directions) without writing anything."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return False, None, []
    import optuna

    storage = None
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                             skip_table_creation=True,
                                             skip_compatibility_check=True)
        studies = storage.get_all_studies()
    except Exception:  # an empty database (no tables yet): no study
        return False, None, []
    finally:
        if storage is not None:  # no connection kept open: it would pin the WAL at close
            storage.engine.dispose()
    for s in studies:
        if s.study_name == name:
            meta = stored_meta(s)
            return True, meta if isinstance(meta, dict) else None, [
                d.name.lower() for d in s.directions]
    return False, None, []
