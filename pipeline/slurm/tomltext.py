"""Settings written back as a TOML file that `--config` reads (pipeline.config.load_toml): the
values that differ from the defaults, paths absolute, so that a job's task runs with exactly the
settings it was submitted with, and a user can read and edit them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pipeline.config import InferSettings, setting_fields


def value_text(value: Any) -> str:
    """One TOML value (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form here")
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def absolute(value: Any) -> Any:
    """A path made absolute against the current folder (the file is read from elsewhere)."""
    return Path(value).expanduser().absolute() if isinstance(value, Path) else value


def settings_toml(
    settings: InferSettings,
    cls: type[InferSettings],
    *,
    header: str = "",
    always: tuple[str, ...] = (),
    never: tuple[str, ...] = (),
) -> str:
    """``cls``'s fields of ``settings`` that differ from their defaults (plus ``always``, less
    ``never``), one ``key = value`` a line; a per-task prompt table last."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    tables: list[str] = []
    for setting in setting_fields(cls):
        value = absolute(getattr(settings, setting.name))
        if setting.name in never or (value == setting.default and setting.name not in always):
            continue
        if value is None:
            continue
        if setting.kind == "prompts":
            tables.append(f"\n[{setting.name}]")
            tables += [f"{json.dumps(k)} = {value_text(v)}" for k, v in value.items()]
        else:
            lines.append(f"{setting.name} = {value_text(value)}")
    return "\n".join(lines + tables) + "\n"
