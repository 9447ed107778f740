"""Open the study a search wrote, read-only: `open_study(OUT_DIR_OR_STORAGE, study=None)`.

What can be given (the storage contract of ``nas_dil.search``):

- a search's output folder: its ``study.db`` (SQLite) is opened;
- an SQLite file, or an ``sqlite:///…`` URL;
- any other SQLAlchemy URL Optuna's ``RDBStorage`` takes (``postgresql://…``, ``mysql://…``);
- an ``optuna.Study`` already open (what a search has in hand at its end).

SQLite is opened through a read-only URI (``mode=ro``): reading never creates, migrates or
locks the file beyond one short read, so a report or dashboard can run while a search writes,
and a wrong path never leaves an empty ``study.db`` behind. Every problem is a ``UserError``
with one line naming the location.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from nas_dil.errors import UserError
from nas_dil.search.records import (
    META_KEY,
    STORAGE_FILE,
    Objective,
    StoredTrial,
    StudyMeta,
    stored_meta,
)

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

__all__ = [
    "META_KEY",
    "STORAGE_FILE",
    "Objective",
    "StudySource",
    "StudySourceError",
    "open_storage",
    "open_study",
]

_SQLITE_HEADER = b"SQLite format 3\x00"
DIRECTIONS = ("maximize", "minimize")


class StudySourceError(UserError, ValueError):
    """A storage or study that cannot be read as a nas-dil study."""


@dataclass(frozen=True)
class StudySource:
    """An open study and where it lives."""

    study: optuna.Study
    location: str  # what the user gave, for messages
    storage_url: str | None  # the URL it was opened with (read-only for SQLite); None: unknown
    out_dir: Path | None  # the search's output folder (weights are relative to it)
    meta: StudyMeta  # the "nas_dil" study user attr
    objectives: tuple[Objective, ...]

    @property
    def name(self) -> str:
        return self.study.study_name

    def trials(self) -> list[StoredTrial]:
        """Every trial of the study, decoded (`StoredTrial.from_frozen`), by number."""
        return sorted((StoredTrial.from_frozen(t) for t in self.study.get_trials(deepcopy=False)),
                      key=lambda t: t.number)

    def resolve(self, relative: str) -> Path | None:
        """A file the search recorded relative to its output folder, if it exists there.

        Tries the storage's own folder first (the output folder may have been moved), then
        the ``out_dir`` the search recorded. A stored path is data, not a place to go: an
        absolute one, or one that leads out of the folder (``..``, a link), gives None.
        """
        p = Path(relative)
        if not relative or p.is_absolute():
            return None
        roots = [self.out_dir]
        if self.meta.out_dir:
            roots.append(Path(self.meta.out_dir))
        for root in roots:
            if root is None:
                continue
            base = root.resolve()
            found = (base / p).resolve()
            if found.is_relative_to(base) and found.is_file():
                return root / p
        return None


def _sqlite_ro_url(path: Path) -> str:
    # the SQLite URI form takes percent-encoding; SQLAlchemy hands it to sqlite3 with uri=True
    return f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"


def _sqlite_path_from_url(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (None for ``:memory:`` or a non-SQLite URL)."""
    if not url.startswith("sqlite:"):
        return None
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    rest = rest.split("?", 1)[0]
    if rest.startswith("file:"):
        rest = unquote(rest[5:])
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def _check_sqlite_file(path: Path, location: str) -> None:
    if not path.exists():
        raise StudySourceError(f"{location}: no such file")
    if path.is_dir():
        raise StudySourceError(f"{location}: is a folder, not an SQLite file")
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as e:
        raise StudySourceError(f"{location}: cannot read ({e.strerror})") from None
    if head != _SQLITE_HEADER:
        raise StudySourceError(f"{location}: not an SQLite database (expected a nas-dil study.db)")


def _resolve(source: str | os.PathLike[str]) -> tuple[str, Path | None, str]:
    """(storage URL, local folder of the storage or None, location for messages)."""
    text = os.fspath(source)
    if "://" in text:
        path = _sqlite_path_from_url(text)
        if path is None:
            if text.startswith("sqlite:"):
                raise StudySourceError(f"{text}: an in-memory SQLite storage holds no study")
            return text, None, text
        _check_sqlite_file(path, text)
        return _sqlite_ro_url(path), path.resolve().parent, text
    path = Path(text).expanduser()
    if path.is_dir():
        db = path / STORAGE_FILE
        if not db.is_file():
            raise StudySourceError(
                f"{text}: no {STORAGE_FILE} in this folder (give a search's output folder, "
                "its study.db or a storage URL)"
            )
        _check_sqlite_file(db, str(db))
        return _sqlite_ro_url(db), path.resolve(), text
    if not path.exists():
        raise StudySourceError(f"{text}: no such file or folder")
    _check_sqlite_file(path, text)
    return _sqlite_ro_url(path), path.resolve().parent, text


def open_storage(source: str | os.PathLike[str]) -> tuple[BaseStorage, str, Path | None, str]:
    """(read-only storage, URL, local folder, location) of an output folder, file or URL."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.pool import NullPool

    url, folder, location = _resolve(source)
    try:
        # SQLite: no pooled connection kept between reads (each read is one short
        # transaction), so a reader never keeps a search's WAL from being folded back
        kwargs = {"poolclass": NullPool} if url.startswith("sqlite") else {}
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, skip_table_creation=True, skip_compatibility_check=True
        )
        storage.get_all_studies()  # fails here when the file is SQLite but not Optuna's
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            ValueError, ImportError) as e:
        reason = str(getattr(e, "orig", None) or e).splitlines()[0][:120]
        raise StudySourceError(f"{location}: not an Optuna storage ({reason})") from None
    return storage, url, folder, location


def _objectives(study: optuna.Study, meta: StudyMeta, where: str) -> tuple[Objective, ...]:
    directions = [d.name.lower() for d in study.directions]
    objs = meta.objectives
    if objs:
        if [o.direction for o in objs] != directions:
            raise StudySourceError(
                f"{where}: objectives {[(o.name, o.direction) for o in objs]} do not match "
                f"the study's directions {directions}"
            )
        return objs
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    return tuple(Objective(n, d) for n, d in zip(names, directions, strict=True))


def _from_study(study: optuna.Study, location: str, url: str | None,
                folder: Path | None) -> StudySource:
    raw = stored_meta(study)
    where = f"{location}: study {study.study_name!r}"
    if not isinstance(raw, dict):
        raise StudySourceError(f"{where} is not a nas-dil study (no {META_KEY!r} study attribute)")
    try:
        meta = StudyMeta.from_dict(raw)
    except ValueError as e:
        raise StudySourceError(f"{where}: the nas_dil study attribute: {e}") from None
    # the stored out_dir is never taken as the folder to write into (a report of a study
    # opened from elsewhere needs an explicit --out); `resolve` still reads weights below it
    return StudySource(study, location, url, folder, meta, _objectives(study, meta, where))


def open_study(
    source: str | os.PathLike[str] | optuna.Study | StudySource, study: str | None = None
) -> StudySource:
    """Open a nas-dil study read-only (see the module docstring for what ``source`` may be).

    ``study`` names the study when the storage holds several; with one study it may be left
    out. Raises ``StudySourceError`` (a ``UserError``) with one line on any bad input.
    """
    import optuna

    if isinstance(source, StudySource):
        return source
    if isinstance(source, optuna.Study):
        if study is not None and study != source.study_name:
            raise StudySourceError(f"study {source.study_name!r} given, but {study!r} asked for")
        backend = getattr(source._storage, "_backend", source._storage)  # under optuna's cache
        storage_url = getattr(backend, "url", None)
        folder = None
        if isinstance(storage_url, str):
            p = _sqlite_path_from_url(storage_url)
            folder = p.resolve().parent if p is not None and p.is_file() else None
        return _from_study(source, source.study_name, storage_url, folder)
    storage, url, folder, location = open_storage(source)
    names = [s.study_name for s in storage.get_all_studies()]
    if not names:
        raise StudySourceError(f"{location}: the storage holds no study")
    if study is None:
        if len(names) > 1:
            raise StudySourceError(
                f"{location}: the storage holds {len(names)} studies ({', '.join(names)}); "
                "pick one with --study NAME"
            )
        study = names[0]
    elif study not in names:
        raise StudySourceError(
            f"{location}: no study {study!r} in the storage (it holds: {', '.join(names)})"
        )
    loaded = optuna.load_study(study_name=study, storage=storage)
    return _from_study(loaded, location, url, folder)
