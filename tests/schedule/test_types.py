from __future__ import annotations

import subprocess
import sys

import pytest

from nas_dil.schedule import Schedule, ScheduleError, parse_ints


@pytest.mark.parametrize(
    ("text", "rates"),
    [("1,2,5", (1, 2, 5)), ("1-2-5", (1, 2, 5)), ("[1, 2, 5]", (1, 2, 5)), (" 7 ", (7,)),
     ("1,2,5*2", (1, 2, 5, 1, 2, 5)), ("1 2 3", (1, 2, 3))],
)
def test_parse(text: str, rates: tuple[int, ...]) -> None:
    assert Schedule.parse(text).rates == rates


@pytest.mark.parametrize(
    ("text", "kernel", "fragment"),
    [
        ("0,2", 3, "rates=[0, 2]"),
        ("1,x", 3, "'x' is not an integer"),
        ("", 3, "empty schedule"),
        ("1,2", 4, "kernels=[4, 4]"),
        ("1,2", 0, "kernels=[0, 0]"),
        ("1,-2", 3, "rates"),
        ("1,2*0", 3, "repeat count"),
        ("1,2", "3,3,3", "3 entries for 2 layers"),
        # issue 23 item 2: the count is checked before the expansion (was a MemoryError)
        ("1,2*1000000000000", 3, "2000000000000 layers: at most 256"),
        ("1*257", 3, "257 layers: at most 256"),
    ],
)
def test_bad_schedules(text: str, kernel: int | str, fragment: str) -> None:
    with pytest.raises(ScheduleError, match=None) as info:
        Schedule.parse(text, kernel=kernel)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_round_trip_and_views() -> None:
    s = Schedule.parse("1,2,5", kernel="3,3,5", strides="1,2,1")
    assert Schedule.from_dict(s.to_dict()) == s
    assert s.kernels == (3, 3, 5) and s.uniform_kernel is None and not s.stride_free
    assert str(s) == "1,2,5" and len(s) == 3
    with pytest.raises(ScheduleError):
        Schedule((1, True))  # type: ignore[arg-type]
    assert parse_ints("4", "x") == (4,)


def test_importing_the_core_does_not_import_torch() -> None:
    code = (
        "import sys, nas_dil, nas_dil.schedule, nas_dil.schedule.batch;"
        "nas_dil.analyze('1,2,5');"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
