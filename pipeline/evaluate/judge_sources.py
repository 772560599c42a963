"""The judges' prompts, read at run time from the user's FDB checkout (``--fdb-repo``).

FDB's licence (CC BY-NC 4.0) keeps its prompts out of this project, so every piece of text the
judges are sent, and the pattern their ratings are read with, comes from the checkout:

- behaviour (v1.5): the system message is ``instruction/behavior.txt``; the user message is the
  f-string ``final_input`` in ``eval_behavior.py``'s ``eval_behavior_all``;
- interruption (v1.0): the system message is the string ``system_msg``, the user message the
  f-string ``user_msg``, both in ``eval_user_interruption.py``'s ``eval_user_interruption``;
  the rating pattern is the ``re.compile`` in its ``parse_output``.

The scripts are parsed with :mod:`ast`, never run. Each file is sha256-checked against the FDB
commit this stage was written against, so what is sent is what the published numbers used.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.evaluate.fdb_repo import FdbRepoError, checked_fdb_file

BEHAVIOUR_FILE = Path("instruction") / "behavior.txt"
BEHAVIOUR_SCRIPT = Path("eval_behavior.py")
INTERRUPTION_SCRIPT = Path("eval_user_interruption.py")
SOURCES_SHA256: Mapping[str, str] = {
    "behaviour": "19e5477dac9a9a1e11de126783a0b820b3ecb70db5e91181824fa944e1947977",
    "behaviour_script": "0ff8179a437503581d65787da3a43924b45310c31a98d1bcbadce5c8605ca6f2",
    "interruption": "e701c14579c1477577b262265cfff75b28ac2e057beee5ba82572afa2a35963a",
}
# FDB's names: (function, variable) of each piece, and the variables each f-string fills
BEHAVIOUR_USER = ("eval_behavior_all", "final_input")
INTERRUPTION_SYSTEM = ("eval_user_interruption", "system_msg")
INTERRUPTION_USER = ("eval_user_interruption", "user_msg")
RATING_FUNCTION = "parse_output"
BEHAVIOUR_FIELDS = {
    "input_clean": "input_clean_text",
    "input_noisy": "input_noisy_text",
    "output_clean": "output_clean_text",
    "output_noisy": "output_noisy_text",
}
INTERRUPTION_FIELDS = {
    "context": "in_before_interrupt_text",
    "interrupt": "in_interrupt_text",
    "response": "out_after_interrupt_text",
}
REGEX_FLAGS = {"DOTALL": re.S, "S": re.S, "MULTILINE": re.M, "M": re.M, "IGNORECASE": re.I}


@dataclass(frozen=True)
class Template:
    """An f-string of FDB's: literal text and the names of the variables it fills in."""

    parts: tuple[tuple[bool, str], ...]  # (is a variable, text or name)

    def fill(self, values: Mapping[str, str], names: Mapping[str, str]) -> str:
        """``values`` by our field names; ``names`` maps them to FDB's variable names."""
        by_variable = {names[field]: value for field, value in values.items()}
        return "".join(by_variable[text] if is_var else text for is_var, text in self.parts)


@dataclass(frozen=True)
class JudgePrompts:
    behaviour_system: str
    behaviour_user: Template
    interruption_system: str
    interruption_user: Template
    rating: re.Pattern[str]
    behaviour_sha256: str  # of the instruction and the script together
    interruption_sha256: str


def _assigned(tree: ast.AST, function: str, variable: str) -> ast.expr | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == variable for t in inner.targets
                ):
                    return inner.value
    return None


def _template(node: ast.expr | None, where: str, fields: Mapping[str, str]) -> Template:
    if not isinstance(node, ast.JoinedStr):
        raise FdbRepoError(f"{where} is not an f-string")
    parts: list[tuple[bool, str]] = []
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            parts.append((False, value.value))
        elif (
            isinstance(value, ast.FormattedValue)
            and isinstance(value.value, ast.Name)
            and value.conversion == -1
            and value.format_spec is None
        ):
            parts.append((True, value.value.id))
        else:
            raise FdbRepoError(f"{where} fills in something other than a plain variable")
    used = {text for is_var, text in parts if is_var}
    if used != set(fields.values()):
        raise FdbRepoError(f"{where} fills in {sorted(used)}, not {sorted(fields.values())}")
    return Template(tuple(parts))


def _rating_pattern(tree: ast.AST, where: str) -> re.Pattern[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == RATING_FUNCTION:
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "compile"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)
                ):
                    flags = 0
                    for arg in call.args[1:]:
                        if not isinstance(arg, ast.Attribute) or arg.attr not in REGEX_FLAGS:
                            raise FdbRepoError(f"{where}: a flag this stage does not know")
                        flags |= REGEX_FLAGS[arg.attr]
                    pattern = re.compile(call.args[0].value, flags)
                    if pattern.groups < 2:
                        raise FdbRepoError(f"{where}: the pattern has no (analysis, rating)")
                    return pattern
    raise FdbRepoError(f"{where}: no re.compile(...) in {RATING_FUNCTION}()")


def _parse(path: Path) -> ast.AST:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise FdbRepoError(f"{path} is not readable Python ({exc})") from exc


def _string(tree: ast.AST, path: Path, function: str, variable: str) -> str:
    node = _assigned(tree, function, variable)
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
        raise FdbRepoError(f"{path} has no string {variable} in {function}()")
    return node.value


def load_prompts(repo: Path, digests: Mapping[str, str] = SOURCES_SHA256) -> JudgePrompts:
    """Every prompt piece, checked (tests pass the digests of their own stand-ins)."""
    text, text_sha = checked_fdb_file(repo, BEHAVIOUR_FILE, digests["behaviour"])
    script, script_sha = checked_fdb_file(repo, BEHAVIOUR_SCRIPT, digests["behaviour_script"])
    judge, judge_sha = checked_fdb_file(repo, INTERRUPTION_SCRIPT, digests["interruption"])
    behaviour_tree, judge_tree = _parse(script), _parse(judge)
    behaviour_user = _assigned(behaviour_tree, *BEHAVIOUR_USER)
    interruption_user = _assigned(judge_tree, *INTERRUPTION_USER)
    return JudgePrompts(
        behaviour_system=text.read_text(encoding="utf-8"),
        behaviour_user=_template(behaviour_user, f"{script}: final_input", BEHAVIOUR_FIELDS),
        interruption_system=_string(judge_tree, judge, *INTERRUPTION_SYSTEM),
        interruption_user=_template(interruption_user, f"{judge}: user_msg", INTERRUPTION_FIELDS),
        rating=_rating_pattern(judge_tree, str(judge)),
        behaviour_sha256=f"{text_sha}+{script_sha}",
        interruption_sha256=judge_sha,
    )
