"""Issue 23's systematic guard: every key of every table of the study file and of the space
file, and every numeric CLI flag, takes NaN, ±inf, negative, zero, huge, wrong-typed and
unicode values. Each is refused in one line that names the file (or the flag) and the key, or
accepted; never a traceback, and nothing written. NaN, inf, a wrong type and a number outside
the range declared on its config field (`nas_dil._check.bounded`) are always refused.

The keys are generated from the config types (dataclass fields, the sampler's signature, the
space rules' key lists, the parser's actions), so a new key is covered without touching this
file, and a new numeric field or flag without a declared range fails
`test_every_number_has_a_range`.

Cases (printed by `test_case_counts`): the fixed sweep is every key × `VALUES` (14 values) and
every numeric flag × `FLAG_VALUES` (11 values); hypothesis then draws random values on top (a
few seconds in the default run, many more under the `slow` marker).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas_dil._check import SEED, Bound, bound_of
from nas_dil._toml import annotation_kinds, is_int
from nas_dil.cli import build_parser
from nas_dil.data.config import DataConfig
from nas_dil.errors import UserError
from nas_dil.models.config import ArchConfig
from nas_dil.search import config as study
from nas_dil.search.baselines import BaselineConfig
from nas_dil.search.objectives import CONSTRAINT_METRICS
from nas_dil.search.samplers import (
    _DRIVER_ARGS,
    SAMPLERS,
    _annotation,
    option_bound,
    sampler_class,
)
from nas_dil.spaces import config as space
from nas_dil.spaces.config import parse_config as parse_space
from nas_dil.train.config import TrainConfig

NAN, INF = float("nan"), float("inf")
# NaN, ±inf, negative, zero, a fraction, huge (TOML's largest int, a huge float), wrong types
# (bool, list, table) and strings (empty, unicode with a right-to-left mark)
VALUES: list[Any] = [NAN, INF, -INF, -1, 0, -0.5, 0.5, 2**63 - 1, 1e308, True, "",
                     "ünï∞\u202e", [1], {"a": 1}]
FLAG_VALUES = ["nan", "inf", "-inf", "-1", "0", "0.5", str(2**63), "1e308", "x", "ünï∞", ""]


@dataclass(frozen=True)
class Key:
    """One key of a file: where it sits, its annotation (None: unknown) and declared range."""

    file: str  # "study" or "space"
    table: str | None  # None: top level
    key: str  # dotted inside the table: "seconds", "resources.tpu", "[0].kernel"
    annotation: str | None
    bound: Bound | None
    sampler: str = "hvi"  # [sampler] keys: the sampler they are options of

    @property
    def dotted(self) -> str:
        if self.table is None:
            return self.key
        return f"{self.table}{self.key}" if self.key.startswith("[") else (
            f"{self.table}.{self.key}")

    @property
    def leaf(self) -> str:
        return self.key.rsplit(".", 1)[-1].split("]")[-1].lstrip(".")


# -- the keys, from the config types ---------------------------------------------------------

_DATACLASS_TABLES = {"parallel": study.ParallelConfig, "trial": study.TrialKindConfig,
                     "early_stop": study.EarlyStopConfig, "arch": ArchConfig,
                     "data": DataConfig, "train": TrainConfig}
# top-level keys parsed by hand (not a dataclass), with the ranges parse_study_config gives
_TOP_BOUNDS = {"n_trials": Bound(True, ge=1), "seed": SEED}


def _dataclass_keys(file: str, table: str, cls: type) -> Iterator[Key]:
    for f in fields(cls):
        yield Key(file, table, f.name, str(f.type), bound_of(f))


def study_keys() -> list[Key]:
    top = {f.name: str(f.type) for f in fields(study.StudyConfig)}
    out: list[Key] = []
    for name in study._TOP:
        if name in _DATACLASS_TABLES:
            out += _dataclass_keys("study", name, _DATACLASS_TABLES[name])
        elif name == "sampler":  # every sampler's options, from its signature
            out.append(Key("study", name, "name", "str", None))
            for sampler in SAMPLERS:
                if sampler == "gp" and importlib.util.find_spec("scipy") is None:
                    continue
                params = inspect.signature(sampler_class(sampler)).parameters
                out += [Key("study", name, p, _annotation(params[p]),
                            option_bound(sampler, p, _annotation(params[p])), sampler)
                        for p in params if p not in _DRIVER_ARGS]
        elif name == "constraints":
            out += [Key("study", name, f"{k}_{m}", "float", None)
                    for m in CONSTRAINT_METRICS for k in ("min", "max")]
            out += [Key("study", name, k, "bool", None)
                    for k in ("gridding_free", "allow_dead_taps")]
        elif name == "objectives":
            out += [Key("study", name, f"[0].{k}", "str", None) for k in ("name", "direction")]
        elif name == "baselines":
            out += [Key("study", name, f"[0].{f.name}", str(f.type), None)
                    for f in fields(BaselineConfig)]
        else:
            ann = top.get(name)
            out.append(Key("study", None, name, "str" if ann == "Path" else ann,
                           _TOP_BOUNDS.get(name)))
    out.append(Key("study", "parallel", "resources.tpu", "float", Bound(False, ge=0)))
    return out


_RULE_BASES: dict[str, dict[str, Any]] = {
    "free": {"choices": [1, 2]}, "gapfree": {"choices": [1, 2]}, "hdc": {"choices": [1, 2, 3]},
    "exponential": {"levels": 2}, "multigrid": {}}


def space_keys() -> list[Key]:
    ann = {f.name: str(f.type) for f in fields(space.SpaceConfig)}
    out = [Key("space", None, k, ann.get(k, "str"), None)
           for k in space._TOP_KEYS if k != "rates"]
    out.append(Key("space", "rates", "rule", "str", None))
    for rule, cls in zip(space.RULES, (space.FreeRates, space.GapfreeRates, space.HDCRates,
                                       space.ExponentialRates, space.MultigridRates),
                         strict=True):
        assert cls.rule == rule
        rates = {f.name: str(f.type) for f in fields(cls)}
        out += [Key("space", f"rates:{rule}", k, rates[k], None) for k in cls.keys if k != "rule"]
    return out


STUDY_KEYS, SPACE_KEYS = study_keys(), space_keys()


# -- writing a file with one key replaced ----------------------------------------------------

def toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):  # TOML takes JSON's escapes, and DEL only escaped
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(map(toml, v)) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml(x)}" for k, x in v.items()) + " }"


def study_doc(k: Key, v: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"space": "hdc"}
    if k.table is None:
        doc[k.key] = v
    elif k.table == "objectives":
        doc["objectives"] = [{"name": "miou", **{k.leaf: v}}]
    elif k.table == "baselines":
        doc["baselines"] = [{"name": "b", "rates": [1, 2], **{k.leaf: v}}]
    elif k.table == "sampler":
        doc["sampler"] = {"name": k.sampler, k.key: v}
    elif k.key == "resources.tpu":
        doc["parallel"] = {"resources": {"tpu": v}}
    else:
        doc[k.table] = {k.key: v}
    return doc


def space_doc(k: Key, v: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"kernel": [3], "output_stride": [8], "width": [16], "depth": 4,
                           "rates": {"rule": "free", "choices": [1, 2]}}
    if k.table is None:
        doc[k.key] = v
    elif k.table == "rates":
        doc["rates"] = {"rule": v, "choices": [1, 2]}
    else:
        rule = k.table.split(":")[1]
        doc["rates"] = {"rule": rule, **_RULE_BASES[rule], k.key: v}
    return doc


def write(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / "f.toml"
    path.write_text("".join(f"{json.dumps(name)} = {toml(v)}\n" for name, v in doc.items()),
                    encoding="utf-8")
    return path


# -- the property ----------------------------------------------------------------------------

def _fits(v: Any, kinds: list[str]) -> bool:
    """Whether a TOML value has one of the annotation's kinds (as the reader types it)."""
    checks = {"int": is_int, "float": lambda x: isinstance(x, int | float)
              and not isinstance(x, bool), "bool": lambda x: isinstance(x, bool),
              "str": lambda x: isinstance(x, str)}
    return any(checks[kd](v) for kd in kinds if kd in checks) or (
        isinstance(v, list) and any(kd.startswith("tuple[") for kd in kinds))


def must_refuse(k: Key, v: Any) -> bool:
    if isinstance(v, float) and not math.isfinite(v):
        return True  # no setting anywhere takes NaN or ±inf
    if k.annotation is None:
        return False
    kinds = annotation_kinds(k.annotation)
    known = {"int", "float", "bool", "str"} | {kd for kd in kinds if kd.startswith("tuple[")}
    if k.file == "space":  # every number of a space file is a bounded integer
        numeric = any("int" in kd or "IntRange" in kd for kd in kinds)
        if numeric and (isinstance(v, float) or (is_int(v) and (v < 0 or v > 2**40))):
            return True
        if isinstance(v, str) and not any("str" in kd for kd in kinds):
            return True
        return False
    if set(kinds) <= known | {"None"} and not _fits(v, kinds):
        return True
    return k.bound is not None and _fits(v, kinds) and not isinstance(v, bool) and (
        not k.bound.ok(v))


def check(k: Key, v: Any, folder: Path) -> bool:
    """Parse the file with ``k`` set to ``v``: accepted (True) or one refusal line naming
    the file and the key (False); anything else fails. Nothing may be written."""
    doc = study_doc(k, v) if k.file == "study" else space_doc(k, v)
    path = write(folder, doc)
    try:
        if k.file == "study":
            study.load_study_config(path)
        else:
            from nas_dil.resources import load_toml

            parse_space(load_toml("search_spaces", path, UserError, "space")[0], path)
    except UserError as e:
        msg = str(e)
        assert "\n" not in msg and "Traceback" not in msg, msg
        assert msg.startswith(f"{path}: ") and msg.count(str(path)) == 1, msg
        assert k.leaf in msg, (k.dotted, msg)
        refused = True
    else:
        refused = False
    assert [p.name for p in folder.iterdir()] == ["f.toml"], "something was written"
    assert not (refused is False and must_refuse(k, v)), f"{k.dotted} = {v!r} was accepted"
    return refused


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_every_key_every_value(folder: Path) -> None:
    """The fixed sweep: every key of both files × every value of VALUES."""
    refused = 0
    for k in STUDY_KEYS + SPACE_KEYS:
        for v in VALUES:
            refused += check(k, v, folder)
    assert refused > len(STUDY_KEYS + SPACE_KEYS) * 6  # most of these values are bad


_values = st.one_of(
    st.sampled_from(VALUES),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=3),
)
_keys = st.sampled_from(STUDY_KEYS + SPACE_KEYS)


def _hypothesis(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@_hypothesis(100)
@given(k=_keys, v=_values)
def test_random_values(folder: Path, k: Key, v: Any) -> None:
    check(k, v, folder)


@pytest.mark.slow
@_hypothesis(3000)
@given(k=_keys, v=_values)
def test_random_values_many(folder: Path, k: Key, v: Any) -> None:
    check(k, v, folder)


# -- CLI flags -------------------------------------------------------------------------------

# positional / required arguments each command needs to parse (values never used: parse only)
REQUIRED = {"analyze": ["1,2"], "space": ["hdc"], "search": ["s.toml"],
            "model": ["--schedule", "1"], "train": ["--schedule", "1"],
            "eval": ["d", "--data", "d"], "data": ["check", "d"], "report": ["d"],
            "dashboard": ["d"], "export": ["d", "--pick", "knee", "--out", "o"]}
# typed flags whose type is a parser of their own, not one number (checked elsewhere)
NOT_A_NUMBER = {("train", "--image-size")}  # SIDE or H,W, held to [8, 4096] by DataConfig


PARSER = build_parser()


def numeric_flags() -> list[tuple[str, str, Bound]]:
    sub = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for cmd, p in sub.choices.items():
        for a in p._actions:
            if a.type is None or not a.option_strings or (cmd, a.option_strings[0]) in (
                    NOT_A_NUMBER):
                continue
            bound = getattr(a.type, "bound", None)
            assert isinstance(bound, Bound), f"{cmd} {a.option_strings[0]}: no declared range"
            out.append((cmd, a.option_strings[0], bound))
    return out


FLAGS = numeric_flags()


def check_flag(cmd: str, flag: str, bound: Bound, text: str) -> None:
    try:
        v: Any = int(text) if bound.integer else float(text)
        ok = bound.ok(v)
    except ValueError:
        ok = False
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            PARSER.parse_args([cmd, *REQUIRED[cmd], f"{flag}={text}"])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    if ok:
        assert code == 0, (cmd, flag, text, err.getvalue())
    else:
        line = err.getvalue()
        assert code == 2 and line.count("\n") == 1, (cmd, flag, text, line)
        assert line.startswith(f"nas-dil {cmd}: error: argument {flag}: "), line


def test_every_numeric_flag_every_value() -> None:
    for cmd, flag, bound in FLAGS:
        for text in FLAG_VALUES:
            check_flag(cmd, flag, bound, text)


@_hypothesis(100)
@given(case=st.sampled_from(FLAGS),
       text=st.one_of(st.sampled_from(FLAG_VALUES), st.integers().map(str),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.text(max_size=6)))
def test_random_flag_values(case: tuple[str, str, Bound], text: str) -> None:
    check_flag(*case, text)


def test_every_number_has_a_range() -> None:
    """A numeric field of a study-file table declares its range (no unbounded number slips
    past NaN/huge checks); the exceptions are checked by their config's own rule."""
    own_rule = {("arch", "backbone_stride"), ("arch", "output_stride"),  # stem_plan, a set
                ("data", "image_size")}  # [8, 4096] per side, or [h, w]
    missing = [k.dotted for k in STUDY_KEYS
               if k.table in _DATACLASS_TABLES and k.annotation is not None
               and set(annotation_kinds(k.annotation)) & {"int", "float"}
               and k.bound is None and (k.table, k.key) not in own_rule]
    assert missing == []


def test_case_counts() -> None:
    """How many cases the fixed sweeps cover (the report quotes these)."""
    keys = len(STUDY_KEYS) + len(SPACE_KEYS)
    print(f"study keys {len(STUDY_KEYS)}, space keys {len(SPACE_KEYS)}: {keys} × {len(VALUES)}"
          f" = {keys * len(VALUES)} key cases; {len(FLAGS)} numeric flags × {len(FLAG_VALUES)}"
          f" = {len(FLAGS) * len(FLAG_VALUES)} flag cases")
    assert len(STUDY_KEYS) > 80 and len(SPACE_KEYS) > 20 and len(FLAGS) > 20
