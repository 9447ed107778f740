"""Parse `--arch key=value,key=value` (or a JSON file) into ArchConfig overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas_dil.errors import UserError


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if "-" in text and all(p.isdigit() for p in text.split("-")):
        return [int(p) for p in text.split("-")]  # context_rates=1-1-2-4-8-16-1
    return text


def parse_arch(text: str | None) -> dict[str, Any]:
    """`output_stride=8,width=32,context=true` or a path to a JSON object."""
    if not text:
        return {}
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"--arch {text}: no such file") from None
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"--arch {text}: not a JSON object ({e})") from None
        if not isinstance(d, dict):
            raise UserError(f"--arch {text}: expected a JSON object")
        return d.get("arch", d)
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise UserError(f"--arch {text!r}: {part!r} is not key=value")
        out[key.strip()] = _value(value.strip())
    return out
