"""The command line is generated from the settings' declarations, and the README's option tables
agree with them: each default is written once, in pipeline/config.py."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.options import (
    COMMAND_SETTINGS,
    build_parser,
    command_settings,
    default_text,
    repeatable,
    settings_values,
)
from pipeline.config import (
    ENCODERS,
    PACES,
    PREFIXES,
    PROFILES,
    RUNTIMES,
    BenchSettings,
    Command,
    InferSettings,
    Setting,
    flag_for,
    load_toml,
    option,
    resolve_bench_settings,
    setting_fields,
)
from pipeline.stream.protocol import DEFAULT_PORT

README = Path(__file__).resolve().parents[2] / "README.md"
COMMANDS: tuple[Command, ...] = ("infer", "bench", "slurm")
NOT_SETTINGS = {"help", "config", "verbose"}  # options of infer/bench that are no setting


def subparser(command: str, parser: argparse.ArgumentParser | None = None) -> Any:
    """A command's parser; for `slurm`, its `submit` action (which takes the settings)."""
    parser = parser or build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = sub.choices[command]
    return subparser("submit", found) if command == "slurm" else found


def values(*argv: str) -> dict[str, Any]:
    return settings_values(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_with_a_flag_is_an_option_showing_its_default(command: Command) -> None:
    parser = subparser(command)
    settings = command_settings(command)
    assert settings, "no settings offered"
    for setting in settings:
        for flag in setting.option.flags:
            action = parser._option_string_actions[flag]
            assert action.dest == setting.name
            assert action.default is argparse.SUPPRESS  # absent unless given: file and defaults
        shown = default_text(setting)
        action = parser._option_string_actions[setting.flag]
        assert setting.option.help in action.help
        if shown is not None:
            assert f"default: {shown}" in action.help
        if setting.choices:
            assert tuple(action.choices) == setting.choices
    parser.format_help()  # every help string formats (a stray % would raise here)


def test_help_shows_the_dataclass_defaults() -> None:
    infer, bench = subparser("infer"), subparser("bench")
    stall = InferSettings().stall_timeout_s
    assert f"(default: {stall:g})" in infer._option_string_actions["--stall-timeout"].help
    assert f"localhost:{DEFAULT_PORT})" in infer._option_string_actions["--server"].help
    assert f"(default: {DEFAULT_PORT})" in bench._option_string_actions["--port"].help
    assert "(default: on)" in bench._option_string_actions["--no-warmup"].help
    assert "(repeatable)" in bench._option_string_actions["--mount"].help


@pytest.mark.parametrize("command", COMMANDS)
def test_no_option_lacks_a_setting(command: Command) -> None:
    offered = {s.name for s in command_settings(command)}
    fields = {s.name for s in setting_fields(COMMAND_SETTINGS[command])}
    dests = {a.dest for a in subparser(command)._actions} - NOT_SETTINGS
    assert dests <= fields
    assert dests == offered


def test_server_is_an_infer_option_only() -> None:
    assert "--server" in subparser("infer")._option_string_actions
    assert "--server" not in subparser("bench")._option_string_actions  # bench starts its own
    assert "server" in {s.name for s in setting_fields(BenchSettings)}  # still a TOML key there


def test_choices_come_from_the_literal_types() -> None:
    choices = {s.name: s.choices for s in setting_fields(BenchSettings) if s.choices}
    assert choices == {
        "prefix": PREFIXES,
        "profile": PROFILES,
        "pace": PACES,
        "encoder": ENCODERS,
        "runtime": RUNTIMES,
    }


def test_a_boolean_flag_flips_the_default() -> None:
    for setting in setting_fields(BenchSettings):
        if setting.kind == "bool":
            assert setting.flag is not None
            assert setting.flag.startswith("--no-") == setting.default, setting.name


def test_nothing_given_sets_nothing() -> None:
    assert values("infer") == {}
    assert values("bench") == {}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["infer", "--voice", "NATM1.pt"], {"voice_prompt": "NATM1.pt"}),
        (["infer", "--voice-prompt", "x.wav"], {"voice_prompt": "x.wav"}),
        (["infer", "--server_ip", "h:1"], {"server": "h:1"}),
        (["infer", "--task", "a", "--task", "b"], {"tasks": ["a", "b"]}),
        (["infer", "--prefix", "clean_", "--overwrite"], {"prefix": "clean_", "overwrite": True}),
        (["infer", "--root", "d", "--run-dir", "r"], {"root": Path("d"), "run_dir": Path("r")}),
        (
            ["infer", "--task-text-prompt", "user_interruption=a=b"],
            {"text_prompts": {"user_interruption": "a=b"}},
        ),
        (
            ["infer", "--stall-timeout", "5", "--connect-retries", "0"],
            {"stall_timeout_s": 5.0, "connect_retries": 0},
        ),
        (
            ["infer", "--profile", "moshi", "--pace", "realtime"],
            {"profile": "moshi", "pace": "realtime"},
        ),
        (["infer", "--encoder", "sphn", "--insecure"], {"encoder": "sphn", "insecure": True}),
        (["bench", "--no-warmup", "--port", "0"], {"warmup": False, "port": 0}),
        (["bench", "--runtime", "local", "--gpus", "0,1"], {"runtime": "local", "gpus": "0,1"}),
        (
            ["bench", "--hf-cache", "/c", "--sif", "x.sif"],
            {"hf_cache": Path("/c"), "sif": Path("x.sif")},
        ),
        (
            ["bench", "--server-arg=--half", "--server-arg=--x", "--mount", "/a:/b"],
            {"server_args": ["--half", "--x"], "mounts": ["/a:/b"]},
        ),
        (
            ["bench", "--server-command", "run.sh", "--hf-repo", "o/m"],
            {"server_command": "run.sh", "hf_repo": "o/m"},
        ),
        (
            ["bench", "--startup-timeout", "9", "--stop-grace", "2", "--max-restarts", "0"],
            {"startup_timeout_s": 9.0, "stop_grace_s": 2.0, "max_restarts": 0},
        ),
    ],
)
def test_flags_keep_their_dest_and_value_shape(argv: list[str], expected: dict[str, Any]) -> None:
    assert values(*argv) == expected


def test_repeated_options_become_settings_tuples() -> None:
    s = resolve_bench_settings(values("bench", "--server-arg=--half", "--mount", "/a:/b"))
    assert (s.server_args, s.mounts) == (("--half",), ("/a:/b",))


@pytest.mark.parametrize(
    "argv",
    [
        ["infer", "--profile", "gpt"],
        ["infer", "--task-text-prompt", "no-equals-sign"],
        ["infer", "--stall-timeout", "soon"],
        ["bench", "--server", "h:1"],
        ["infer", "--runtime", "docker"],
    ],
)
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_other_commands_keep_their_options() -> None:
    ns = build_parser().parse_args(["cleanup", "--run-id", "r1", "-v"])
    assert (ns.run_id, ns.verbose) == ("r1", True)
    ns = build_parser().parse_args(["synth-data", "--out", "d", "--per-task", "3"])
    assert (ns.out, ns.per_task, ns.verbose, ns.formats) == (Path("d"), 3, False, "benchmark")
    ns = build_parser().parse_args(["bench", "--config", "run.toml", "-v"])
    assert (ns.config, ns.verbose) == (Path("run.toml"), True)


def test_flag_for_names_the_main_flag() -> None:
    assert flag_for("stall_timeout_s") == "--stall-timeout"
    assert flag_for("voice_prompt") == "--voice-prompt"
    assert flag_for("warmup") == "--no-warmup"


@dataclasses.dataclass(frozen=True)
class _WithFileOnly(BenchSettings):
    knob: int = option(3, group="session", help="a setting only the TOML file sets")


def test_a_setting_without_flags_is_toml_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(COMMAND_SETTINGS, "bench", _WithFileOnly)
    bench = subparser("bench")
    assert "knob" not in {a.dest for a in bench._actions}
    assert "--runtime" in bench._option_string_actions  # the others are still there
    assert flag_for("knob", _WithFileOnly) == "knob"  # how a user sets it: the TOML key
    cfg = tmp_path / "run.toml"
    cfg.write_text("knob = 7\n")
    assert load_toml(cfg, _WithFileOnly) == {"knob": 7}


# --- the README's option tables -------------------------------------------------------------
# Format rules: one row per option; the option cell is `--flag METAVAR` (the metavar only where
# the setting declares one), then (`--alias`, ...) for aliases, then (repeatable) for a repeatable
# option; the default cell, less its backticks, is the default the help shows, or - for none.

BOTH = "### Options of `infer` and `bench`"
BENCH_ONLY = "### Options of `bench` only"
SLURM_ONLY = "### Options of `slurm submit` only"
# README rows that are options but no setting: option cell -> default cell
README_EXTRA_ROWS = {"`--config FILE.toml`": "-"}


def readme_table(text: str, heading: str) -> dict[str, tuple[str, str]]:
    """The table under ``heading``: option cell -> (default cell, meaning cell)."""
    lines = text.splitlines()
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[lines.index(heading) + 1 :]:
        if not line.startswith("|"):
            if rows or line.startswith("#"):
                break
            continue
        option_cell, default_cell, meaning = (c.strip() for c in line.strip("| ").split(" | "))
        if option_cell not in ("option", "---"):
            assert option_cell not in rows, f"README lists {option_cell} twice"
            rows[option_cell] = (default_cell, meaning)
    return rows


def option_cell(setting: Setting) -> str:
    """How the README writes an option: `--flag METAVAR` (`--alias`, ...) (repeatable)."""
    main, *aliases = setting.option.flags
    metavar = f" {setting.option.metavar}" if setting.option.metavar else ""
    cell = f"`{main}{metavar}`"
    if aliases:
        cell += " (" + ", ".join(f"`{a}`" for a in aliases) + ")"
    return cell + (" (repeatable)" if repeatable(setting) else "")


def readme_mismatches(text: str) -> list[str]:
    """Where the README's two option tables disagree with the settings (empty: they agree)."""
    infer = command_settings("infer")
    bench = command_settings("bench")
    bench_only = [s for s in bench if s not in infer]
    slurm_only = [s for s in command_settings("slurm") if s not in bench]
    tables = {BOTH: infer, BENCH_ONLY: bench_only, SLURM_ONLY: slurm_only}
    problems = []
    for heading, settings in tables.items():
        rows = readme_table(text, heading)
        expected = {option_cell(s): default_text(s) or "-" for s in settings}
        if heading == BOTH:
            expected |= README_EXTRA_ROWS
        for cell in sorted(rows.keys() - expected.keys()):
            problems.append(f"{heading}: {cell} is no option of the settings")
        for cell, default in expected.items():
            if cell not in rows:
                problems.append(f"{heading}: {cell} is missing")
            elif rows[cell][0].replace("`", "") != default:
                problems.append(f"{cell}: README says {rows[cell][0]}, the settings {default}")
    return problems


def test_readme_tables_agree_with_the_settings() -> None:
    assert readme_mismatches(README.read_text(encoding="utf-8")) == []


def test_readme_check_sees_drift() -> None:
    text = README.read_text(encoding="utf-8")
    stall = InferSettings().stall_timeout_s
    drifted = text.replace(f"| `--stall-timeout S` | {stall:g} |", "| `--stall-timeout S` | 30 |")
    drifted = drifted.replace("| `--mount HOST:CONTAINER` (repeatable) |", "| `--mounts` |")
    assert readme_mismatches(drifted) == [
        f"`--stall-timeout S`: README says 30, the settings {stall:g}",
        f"{BENCH_ONLY}: `--mounts` is no option of the settings",
        f"{BENCH_ONLY}: `--mount HOST:CONTAINER` (repeatable) is missing",
    ]


def test_readme_extra_rows_are_options() -> None:
    for cell in README_EXTRA_ROWS:
        flag, metavar = cell.strip("`").split()
        for command in COMMANDS:
            assert subparser(command)._option_string_actions[flag].metavar == metavar


def test_readme_marks_the_infer_only_options() -> None:
    rows = readme_table(README.read_text(encoding="utf-8"), BOTH)
    bench = command_settings("bench")
    for setting in command_settings("infer"):
        infer_only = setting not in bench
        assert ("(`infer` only)" in rows[option_cell(setting)][1]) == infer_only, setting.name
