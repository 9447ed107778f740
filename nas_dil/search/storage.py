"""The study's storage: SQLite under the output folder by default, or any SQLAlchemy URL.

Checks happen before anything is written: an unreachable server, a file that is not a
database, a study of the same name with other objectives or another config all raise a
one-line `StorageError` and leave every study as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_dil.errors import UserError

__all__ = ["META_KEY", "STORAGE_FILE", "StorageError", "check_storage", "default_url",
           "open_storage", "read_meta", "safe_url"]

META_KEY = "nas_dil"  # the study user attr every nas-dil study carries
STORAGE_FILE = "study.db"  # the SQLite file inside the output folder
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
    text = str(getattr(e, "orig", None) or e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:160]


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


def open_storage(url: str, create: bool = True) -> Any:
    """Optuna's RDBStorage for ``url`` (tables created when ``create``)."""
    import optuna

    path = _sqlite_file(url)
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                          skip_table_creation=not create)
    except Exception as e:
        raise StorageError(f"storage {safe_url(url)}: {_reason(e)}") from None


def read_meta(url: str, name: str) -> tuple[bool, dict[str, Any] | None, list[str]]:
    """(study exists, its nas_dil attr or None, its directions) without writing anything."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return False, None, []
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                             skip_table_creation=True,
                                             skip_compatibility_check=True)
        studies = storage.get_all_studies()
    except Exception:  # an empty database (no tables yet): no study
        return False, None, []
    for s in studies:
        if s.study_name == name:
            meta = s.user_attrs.get(META_KEY)
            return True, meta if isinstance(meta, dict) else None, [
                d.name.lower() for d in s.directions]
    return False, None, []
