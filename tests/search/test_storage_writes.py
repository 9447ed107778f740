"""How the driver writes its storage: SQLite in WAL mode while a search runs and one rollback
file after it; a trial's ask-time attrs stored with its result, in one statement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event, text

from nas_dil.search import run_search
from nas_dil.search.config import load_study_config
from nas_dil.search.driver import _Search
from nas_dil.search.ledger import Run
from nas_dil.search.progress import Progress
from nas_dil.search.storage import _writer_pragmas, close_storage, default_url, open_storage
from nas_dil.search.worker import execute
from tests.search.conftest import RayCluster, sleep_study
from tests.search.test_search import TRAINED_ATTRS, TRIAL_ATTRS


def _journal_mode(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        con.close()


def _plain_study(db: Path) -> None:
    """A study as an older nas-dil (or plain Optuna) left it: rollback journal."""
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    study.tell(study.ask(), 1.0)


def test_sqlite_is_wal_while_open_and_one_rollback_file_after(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    _plain_study(db)  # an existing study opens and keeps its trials
    assert _journal_mode(db) == "delete"
    storage = open_storage(default_url(tmp_path))
    study = optuna.load_study(study_name="s", storage=storage)
    study.tell(study.ask(), 2.0)
    with storage.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    assert (tmp_path / "study.db-wal").exists()
    close_storage(storage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
    assert _journal_mode(db) == "delete"
    values = [t.value for t in optuna.load_study(study_name="s",
                                                 storage=f"sqlite:///{db}").trials]
    assert values == [1.0, 2.0]


def test_a_reader_keeps_reading_and_closing_never_fails(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    storage = open_storage(default_url(tmp_path))
    study = optuna.create_study(study_name="s", storage=storage)
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # a dashboard, read-only
    try:
        study.tell(study.ask(), 1.0)
        assert reader.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 1
        study.tell(study.ask(), 2.0)  # the reader does not block the writer
        close_storage(storage)  # the reader holds it: stays WAL, nothing fails
        assert reader.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 2
    finally:
        reader.close()
    storage = open_storage(default_url(tmp_path))
    close_storage(storage)  # alone now: back to one rollback file
    assert _journal_mode(db) == "delete" and not (tmp_path / "study.db-wal").exists()
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials) == 2


_READERS = {
    # a plain sqlite3 connection kept open, reading now and then (a notebook, a script)
    "sqlite3": """
import sqlite3, sys, time
con = sqlite3.connect(f"file:{sys.argv[1]}/study.db?mode=ro", uri=True, timeout=30)
while True:
    n = con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    print(n, flush=True)
    time.sleep(0.05)
""",
    # what `nas-dil report` and the dashboard do: open_study, then read the trials again
    "open_study": """
import sys, time
from nas_dil.report.source import open_study
src = open_study(sys.argv[1])
while True:
    print(len(src.study.get_trials(deepcopy=False)), flush=True)
    time.sleep(0.05)
""",
}


@pytest.mark.parametrize("reader", sorted(_READERS))
def test_study_db_alone_holds_every_trial_when_a_reader_has_it_open(tmp_path: Path,
                                                                    reader: str) -> None:
    """A real reader process holds the file open while the search's storage closes: the WAL
    is folded back anyway, so study.db copied alone has every trial (issue 11, item 2)."""
    import shutil
    import subprocess
    import sys

    db = tmp_path / "study.db"
    storage = open_storage(default_url(tmp_path))
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("nas_dil", {"out_dir": str(tmp_path), "objectives": []})
    study.tell(study.ask(), 0.0)
    proc = subprocess.Popen([sys.executable, "-c", _READERS[reader], str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1", proc.stderr.read()  # it reads
        for i in range(20):
            study.tell(study.ask(), float(i))
        close_storage(storage)  # the search ends while the reader keeps the file open
        assert proc.poll() is None  # still reading
        alone = tmp_path / "copy"
        alone.mkdir()
        shutil.copy(db, alone / "study.db")  # without study.db-wal
        copied = optuna.load_study(study_name="s", storage=f"sqlite:///{alone / 'study.db'}")
        assert len(copied.trials) == 21
    finally:
        proc.kill()
        proc.wait()


def test_pragmas_only_for_sqlite_files(tmp_path: Path) -> None:
    memory = open_storage("sqlite:///:memory:")
    assert not event.contains(memory.engine, "connect", _writer_pragmas)
    close_storage(memory)
    on_file = open_storage(default_url(tmp_path))
    assert event.contains(on_file.engine, "connect", _writer_pragmas)
    close_storage(on_file)


@pytest.mark.slow
def test_ask_time_attrs_are_written_with_the_result(ray_cluster: RayCluster,
                                                    tmp_path: Path) -> None:
    """While it runs, the stored trial holds what sampling set (the sampler's constant liar
    re-reads running trials per suggestion); its tell writes the rest with the result."""
    cfg = load_study_config(sleep_study(tmp_path / "s.toml", space="free", n_trials=2,
                                        sleep_s=0.01))
    search = _Search(cfg, n_trials=None, storage=None, out=tmp_path / "out",
                     address=ray_cluster.address, resume=False,
                     progress=Progress(enabled=False), num_cpus=None)
    search.prepare()
    runs: list[Run] = []
    search._submit = runs.append  # type: ignore[method-assign, assignment]  # here, not Ray
    try:
        search._ask()
        (run,) = runs
        running = search.recorder.study._storage.get_trial(run.trial_id)
        assert running.state == TrialState.RUNNING
        assert set(running.user_attrs) == {"candidate", "repaired"}
        assert set(TRIAL_ATTRS) <= set(run.record.to_attrs())
        search._complete(run, execute(run.payload))
    finally:
        search.lock.release()
        search.recorder.close()
    done = optuna.load_study(study_name="s",
                             storage=default_url(tmp_path / "out")).trials[0]
    assert done.state == TrialState.COMPLETE
    for k in (*TRIAL_ATTRS, *TRAINED_ATTRS, "repaired"):
        assert k in done.user_attrs, k
    assert done.user_attrs["candidate"] == run.record.candidate


@pytest.mark.slow
def test_a_finished_search_leaves_one_rollback_file(ray_cluster: RayCluster,
                                                    tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=2, sleep_s=0.01)
    s = run_search(cfg, out=tmp_path / "out", address=ray_cluster.address, progress=False)
    assert s.done == 2
    db = tmp_path / "out" / "study.db"
    assert _journal_mode(db) == "delete"
    assert not db.with_name("study.db-wal").exists() and not db.with_name("study.db-shm").exists()
