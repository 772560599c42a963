"""The judges' instructions, read at run time from the user's FDB checkout (``--fdb-repo``).

FDB's licence (CC BY-NC 4.0) keeps its prompts out of this project. The behaviour judge's
system message is the file ``instruction/behavior.txt``; the interruption judge's is a string
literal inside ``eval_user_interruption.py``, found with :mod:`ast` (never executed). Both files
are sha256-checked against the FDB commit the stage was written against, so the prompt sent is
the one the published numbers were made with.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.evaluate.fdb_repo import FdbRepoError, checked_fdb_file

BEHAVIOUR_FILE = Path("instruction") / "behavior.txt"
INTERRUPTION_SCRIPT = Path("eval_user_interruption.py")
# FDB names: the function that asks the interruption judge, and its system message variable
INTERRUPTION_FUNCTION = "eval_user_interruption"
INTERRUPTION_VARIABLE = "system_msg"
SOURCES_SHA256: Mapping[str, str] = {
    "behaviour": "19e5477dac9a9a1e11de126783a0b820b3ecb70db5e91181824fa944e1947977",
    "interruption": "e701c14579c1477577b262265cfff75b28ac2e057beee5ba82572afa2a35963a",
}


@dataclass(frozen=True)
class JudgePrompts:
    """The two system messages and the sha256 of the files they came from."""

    behaviour: str
    behaviour_sha256: str
    interruption: str
    interruption_sha256: str


def _assigned_string(source: str, function: str, variable: str) -> str | None:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == variable for t in inner.targets)
                    and isinstance(inner.value, ast.Constant)
                    and isinstance(inner.value.value, str)
                ):
                    return inner.value.value
    return None


def interruption_prompt(script: Path) -> str:
    """The system message of FDB's interruption judge, from its script's source."""
    try:
        found = _assigned_string(
            script.read_text(encoding="utf-8"), INTERRUPTION_FUNCTION, INTERRUPTION_VARIABLE
        )
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise FdbRepoError(f"{script} is not readable Python ({exc})") from exc
    if found is None:
        raise FdbRepoError(
            f"{script} has no string {INTERRUPTION_VARIABLE} in {INTERRUPTION_FUNCTION}()"
        )
    return found


def load_prompts(repo: Path, digests: Mapping[str, str] = SOURCES_SHA256) -> JudgePrompts:
    """Both system messages, checked (tests pass the digests of their own stand-ins)."""
    behaviour, behaviour_sha = checked_fdb_file(repo, BEHAVIOUR_FILE, digests["behaviour"])
    script, script_sha = checked_fdb_file(repo, INTERRUPTION_SCRIPT, digests["interruption"])
    return JudgePrompts(
        behaviour.read_text(encoding="utf-8"),
        behaviour_sha,
        interruption_prompt(script),
        script_sha,
    )
