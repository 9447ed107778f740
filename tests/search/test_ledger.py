"""The ledger's rules without Ray or a storage: routing of duplicates, counts towards
n_trials, the front, and what a restarted driver takes from the storage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from nas_dil.search.ledger import Ledger, Run
from nas_dil.search.records import Objective, StoredTrial, TrialPayload, TrialRecord
from nas_dil.spaces import Candidate

OBJS = (Objective("miou", "maximize"), Objective("rf", "maximize"),
        Objective("gflops", "minimize"))


def _constraints(attrs: Mapping[str, Any]) -> dict[str, float]:
    return {"max_gflops": float(attrs.get("gflops", 0.0)) - 1.0}


def ledger(n_trials: int = 10) -> Ledger:
    return Ledger(n_trials, OBJS, _constraints)


def run(number: int, key: str, baseline: str | None = None) -> Run:
    cand = Candidate((1, 2, 5), 3, 8, 16)
    payload = TrialPayload(kind="sleep", trial_config={}, schedule={}, seed=0, key=key,
                           number=number, analytic={}, losses=(), keep_weights=False,
                           options={})
    enq = {"baseline": baseline} if baseline else {}
    return Run(number + 100, number, cand, {}, enq, TrialRecord(key=key), payload)


def test_twins_park_then_reuse_the_result() -> None:
    led = ledger()
    a, b, c = run(0, "k"), run(1, "k"), run(2, "k")
    assert led.route(a) == "submit"
    led.submitted("ref-a", a)
    assert led.route(b) == "park" and led.route(c) == "park"
    assert led.waiting == 3 and led.budget_left()
    assert led.collected("ref-a") is a
    led.finish("k", 0, "complete", {"miou": 0.5, "rf": 10, "gflops": 0.1, "node": "n",
                                     "key": "k"}, [0.5, 10.0, 0.1])
    assert list(led.release("k")) == [("reuse", b), ("reuse", c)]
    assert led.finished["k"].attrs == {"miou": 0.5, "node": "n"}  # what a twin borrows
    assert led.parked == {}


def test_a_failed_twin_hands_training_to_the_first_parked() -> None:
    led = ledger()
    a, b, c = run(0, "k"), run(1, "k"), run(2, "k")
    led.route(a)
    led.submitted("ref-a", a)
    led.route(b)
    led.route(c)
    led.collected("ref-a")
    led.finish("k", 0, "fail", {})  # nothing to reuse
    released = led.release("k")
    action, first = next(released)
    assert (action, first) == ("submit", b)
    led.submitted("ref-b", b)  # the loop submits it before the next decision
    assert list(released) == []  # c waits again, for b
    assert led.parked == {"k": [c]} and led.inflight == {"k": 1}


@pytest.mark.parametrize(("states", "done", "counts"), [
    (["complete", "pruned", "fail"], 3, (1, 1, 1)),
    (["complete", "complete"], 2, (2, 0, 0)),
    ([], 0, (0, 0, 0)),
])
def test_counts(states: list[str], done: int, counts: tuple[int, int, int]) -> None:
    led = ledger(n_trials=3)
    for i, st in enumerate(states):
        led.finish(f"k{i}", i, st, {"miou": 0.1, "rf": 1, "gflops": 0.1},  # type: ignore[arg-type]
                   [0.1, 1.0, 0.1] if st == "complete" else None)
    s = led.status
    assert s.done == done and (s.complete, s.pruned, s.failed) == counts
    assert led.budget_left() is (done < 3)
    led.infeasible()
    assert s.done == done and s.infeasible == 1  # infeasible trials never count


def test_front_uses_feasible_trials_and_dominance() -> None:
    led = ledger()
    rows = {0: [0.5, 10.0, 0.5], 1: [0.4, 5.0, 0.6], 2: [0.9, 50.0, 2.0], 3: [0.6, 8.0, 0.5]}
    for n, v in rows.items():
        led.finish(f"k{n}", n, "complete", {"miou": v[0], "rf": v[1], "gflops": v[2]}, v)
    numbers, pts = led.front()
    # 1 is dominated by 0; 2 is infeasible (gflops > 1); 0 and 3 trade RF for mIoU
    assert numbers == [0, 3] and pts.shape == (2, 3)
    assert led.on_front([0.55, 9.0, 0.5]) is True  # between 0 and 3
    assert led.on_front([0.5, 10.0, 0.5]) is True  # equal to 0: not dominated
    assert led.on_front([0.5, 7.0, 0.5]) is False  # dominated by 0


def _stored(number: int, state: str, values: list[float] | None = None,
            **attrs: Any) -> StoredTrial:
    return StoredTrial(number, state, None if values is None else tuple(values),
                       TrialRecord.from_attrs(attrs), _constraints(attrs), trial_id=number + 100)


def test_recover_counts_keeps_keys_and_returns_orphans() -> None:
    led = ledger()
    v = [0.5, 10.0, 0.5]
    orphans = led.recover([
        _stored(0, "complete", v, key="a", miou=0.5, rf=10.0, gflops=0.5),
        _stored(1, "complete", v, key="a", reused_from=0, miou=0.5, rf=10.0, gflops=0.5),
        _stored(2, "pruned", key="b", pruned_reason="x"),
        _stored(3, "fail", key="c", fail_reason="oom"),
        _stored(4, "fail", key="d", requeue=True),  # rerun: not counted
        _stored(5, "pruned", key="e", infeasible=True),  # never trained: not counted
        _stored(6, "running", key="f"),
        _stored(7, "waiting"),
    ])
    assert [t.number for t in orphans] == [6]
    s = led.status
    assert (s.done, s.complete, s.pruned, s.failed, s.reused, s.infeasible) == (4, 2, 1, 1, 1, 1)
    assert set(led.finished) == {"a", "b"}  # failed results are not reused
    assert led.finished["a"].number == 0 and led.done_at_start == 4
    assert led.front()[0] == [0]  # the duplicate 1 is candidate a, not a second front member


def test_drain_forgets_what_runs() -> None:
    led = ledger()
    a, b = run(0, "k"), run(1, "k")
    led.route(a)
    led.submitted("ref", a)
    led.route(b)
    assert led.drain() == [a, b]
    assert led.waiting == 0 and led.inflight == {}


def test_snapshot_is_cached_until_a_trial_completes() -> None:
    calls: list[int] = []

    def make(completed: list[Any]) -> Any:
        calls.append(len(completed))
        return len(completed)

    led = Ledger(10, OBJS, _constraints, make)
    assert led.snapshot() == 0 and led.snapshot() == 0 and calls == [0]
    led.finish("k", 0, "complete", {"miou": 0.5, "rf": 1, "gflops": 0.1,
                                     "miou_curve": [0.4, 0.5]}, [0.5, 1.0, 0.1])
    assert led.snapshot() == 1 and calls == [0, 1]
    assert led.completed[0].curve == (0.4, 0.5) and led.completed[0].losses == (-1.0, 0.1)
    assert ledger().snapshot() is None  # no early stopping


def test_looks_at_one_candidate_are_one_front_row_with_their_mean() -> None:
    """Repeats: looks 1 and 2 of "a" (keys a1, a2, look_of "a") join trial 0's row, their
    mIoU averaged; the analytic objectives stay; the row keeps the first look's number."""
    led = ledger()
    assert led.next_look("a") == 0
    led.looked("a")
    led.finish("a", 0, "complete", {"key": "a", "miou": 0.9}, [0.9, 10.0, 0.5])
    led.finish("b", 1, "complete", {"key": "b", "miou": 0.6}, [0.6, 20.0, 0.5])
    assert led.front()[0] == [0, 1]
    for n, (k, m) in enumerate([("a1", 0.3), ("a2", 0.45)], start=2):
        led.looked("a")
        led.finish(k, n, "complete", {"key": k, "look_of": "a", "miou": m}, [m, 10.0, 0.5])
    assert led.next_look("a") == 3
    assert led.front()[0] == [1]  # a's mean 0.55 < b's 0.6 at less RF: dominated
    rows = led.candidates()
    assert len(rows) == 2 and rows[0].values == pytest.approx([0.55, 10, 0.5])
    assert rows[0].number == 0 and rows[0].n_looks == 3
    assert led.status.complete == 4 and led.status.repeats == 0  # attrs without "look"


def test_recover_counts_looks_but_not_reused_duplicates() -> None:
    led = ledger()
    v = [0.5, 10.0, 0.5]
    led.recover([
        _stored(0, "complete", v, key="a", miou=0.5),
        _stored(1, "complete", [0.7, 10.0, 0.5], key="a1", look_of="a", look=1, miou=0.7),
        _stored(2, "fail", key="a2", look_of="a", look=2, fail_reason="oom"),
        _stored(3, "complete", v, key="a", reused_from=0, miou=0.5),
        _stored(4, "fail", key="a3", look_of="a", requeue=True),
    ])
    assert led.next_look("a") == 3  # looks 0, 1, 2 were asked; the requeued one is asked again
    assert led.status.repeats == 2
    assert led.candidates()[0].values == pytest.approx([0.6, 10.0, 0.5])
    assert [r.number for r in led.candidates()] == [0]  # the duplicate is a, not a look


def test_recovery_judges_feasibility_by_the_stored_constraints() -> None:
    """A restarted driver reads feasibility as everything else does: the constraint values
    stored with the trial (all <= 0), not a rule recomputed from its attributes."""
    led = ledger()
    v = [0.9, 10.0, 0.5]
    bad = StoredTrial(0, "complete", tuple(v), TrialRecord.from_attrs({"key": "a", "gflops": 0.5}),
                      {"max_gflops": 0.25}, trial_id=100)
    led.recover([bad, _stored(1, "complete", [0.5, 10.0, 0.5], key="b", gflops=0.5)])
    assert led.front()[0] == [1]
    assert led.on_front(v) and not led.on_front([0.4, 10.0, 0.5])


def test_confirmation_looks_count_apart_from_n_trials() -> None:
    """A confirmation look (``confirm``) joins its candidate's looks and the front but counts
    in ``confirm_done``, not towards n_trials; a baseline's further seeds count towards
    n_trials (as trials, not as repeats)."""
    led = ledger(n_trials=2)
    led.recover([
        _stored(0, "complete", [0.5, 10.0, 0.5], key="a", miou=0.5, baseline="hdc"),
        _stored(1, "complete", [0.7, 10.0, 0.5], key="a1", look_of="a", look=1, miou=0.7,
                baseline="hdc"),
        _stored(2, "complete", [0.6, 10.0, 0.5], key="a2", look_of="a", look=2, miou=0.6,
                confirm=True),
        _stored(3, "fail", key="a3", look_of="a", look=3, confirm=True, fail_reason="oom"),
    ])
    s = led.status
    assert (s.done, s.complete, s.failed, s.confirm_done, s.repeats) == (2, 2, 0, 2, 0)
    assert not led.budget_left() and led.next_look("a") == 4
    (a,) = led.candidates()
    assert a.n_looks == 3 and a.values == pytest.approx([0.6, 10.0, 0.5])
