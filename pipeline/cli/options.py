"""The command line's options: parsing only.

The options of `infer` and `bench` are built from the settings' declarations in
:mod:`pipeline.config` (flags, help, group, default), so each default lives there alone. Every
settings option defaults to ``argparse.SUPPRESS``: an option not given stays absent, so the TOML
file and the defaults still apply (command line > TOML file > defaults).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import (
    GROUPS,
    BenchSettings,
    Command,
    InferSettings,
    Kind,
    Setting,
    SlurmSettings,
    setting_fields,
)

S = argparse.SUPPRESS  # an option not given stays absent, so the TOML file and defaults can apply

# The settings each command's options set
COMMAND_SETTINGS: dict[Command, type[InferSettings]] = {
    "infer": InferSettings,
    "bench": BenchSettings,
    "slurm": SlurmSettings,
}


def _text_prompt_pair(text: str) -> tuple[str, str]:
    task, sep, prompt = text.partition("=")
    if not sep or not task:
        raise argparse.ArgumentTypeError("use TASK=PROMPT, e.g. user_interruption='You are ...'")
    return task, prompt


# How a value of each kind is read from one command-line word (str and choice: as it is)
_PARSERS: dict[Kind, Callable[[str], Any]] = {
    "path": Path,
    "int": int,
    "float": float,
    "prompts": _text_prompt_pair,
}
_REPEATABLE: tuple[Kind, ...] = ("strings", "prompts")


def default_text(setting: Setting) -> str | None:
    """A setting's default as the help and the README show it; None when it has none."""
    if setting.option.shown_default is not None:
        return setting.option.shown_default
    value = setting.default
    if value is None or value in ((), {}):
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value == "":
        return '""'
    return str(value)


def repeatable(setting: Setting) -> bool:
    """Whether the option may be given several times (each adds to a list)."""
    return setting.kind in _REPEATABLE


def help_text(setting: Setting) -> str:
    """The option's help: the setting's own, then "repeatable" and the default."""
    notes = ["repeatable"] if repeatable(setting) else []
    shown = default_text(setting)
    if shown is not None:
        notes.append(f"default: {shown}")
    text = setting.option.help + (f" ({'; '.join(notes)})" if notes else "")
    return text.replace("%", "%%")  # argparse formats help with %


def argument_kwargs(setting: Setting) -> dict[str, Any]:
    """``add_argument``'s keywords for a setting (its flags are the positional arguments)."""
    kwargs: dict[str, Any] = {"dest": setting.name, "default": S, "help": help_text(setting)}
    if setting.kind == "bool":  # the flag flips the default: --overwrite, --no-warmup
        kwargs["action"] = "store_false" if setting.default else "store_true"
        return kwargs
    if repeatable(setting):
        kwargs["action"] = "append"
    if setting.kind in _PARSERS:
        kwargs["type"] = _PARSERS[setting.kind]
    if setting.choices:
        kwargs["choices"] = list(setting.choices)
    if setting.option.metavar is not None:
        kwargs["metavar"] = setting.option.metavar
    return kwargs


def command_settings(command: Command) -> list[Setting]:
    """The settings that are options of ``command``, in declaration order."""
    return [s for s in setting_fields(COMMAND_SETTINGS[command]) if s.offered_by(command)]


def add_settings_options(
    parser: argparse.ArgumentParser, command: Command, only: tuple[str, ...] = GROUPS
) -> None:
    """Every setting of ``command`` (in the groups ``only``) as an option, by group; then
    --config and -v."""
    settings = command_settings(command)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for group in only:
        members = [s for s in settings if s.option.group == group]
        if members:
            groups[group] = parser.add_argument_group(group)
        for setting in members:
            groups[group].add_argument(*setting.option.flags, **argument_kwargs(setting))
    records = groups.get("records") or parser.add_argument_group("records")
    if only != GROUPS:  # a partial set (resubmit): the rest comes from the job's own file
        records.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        return
    records.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE.toml",
        help="settings file; the command line wins over it, it wins over defaults",
    )
    records.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Benchmark full-duplex speech servers (PersonaPlex, Moshi)"
        " on Full-Duplex-Bench.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    infer = sub.add_parser(
        "infer",
        help="stream every sample to a running server and write outputs beside inputs",
        description="Stream every benchmark sample to a running server; resumable.",
    )
    add_settings_options(infer, "infer")

    bench = sub.add_parser(
        "bench",
        help="start the server(s), run every sample, tear everything down",
        description="One command: pre-flight, start the model server(s) (Docker, Apptainer or a"
        " local process), wait until ready, warm up, stream the dataset, tear down.",
    )
    add_settings_options(bench, "bench")

    cleanup = sub.add_parser(
        "cleanup",
        help="remove servers a crashed run left behind",
        description="Remove containers and server processes left by crashed runs.",
    )
    cleanup.add_argument("--run-id", default=None, help="only this run (default: every run)")
    cleanup.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    add_slurm_parsers(sub)

    from pipeline.dataset.synthesize import FORMAT_CHOICES

    synth = sub.add_parser(
        "synth-data",
        help="write a small synthetic dataset in the v1.5 layout (espeak-ng)",
        description="A small Full-Duplex-Bench-shaped dataset of synthetic speech, for trying"
        " the pipeline out; not the benchmark.",
    )
    synth.add_argument("--out", type=Path, required=True, help="dataset root to create")
    synth.add_argument("--per-task", type=int, default=2, help="samples per task (default 2)")
    synth.add_argument(
        "--formats",
        choices=FORMAT_CHOICES,
        default="benchmark",
        help="benchmark: 16 kHz mono PCM16 as Full-Duplex-Bench ships (what `evaluate` reads;"
        " default); mixed: several rates, channel counts and subtypes (client tests)",
    )
    synth.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_evaluate_parser(sub)
    return parser


def add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pipeline.dataset.discovery import KNOWN_TASKS
    from pipeline.evaluate.asr_worker import PINNED_MODEL
    from pipeline.evaluate.settings import STAGE_NAMES

    ev = sub.add_parser(
        "evaluate",
        help="turn outputs into Full-Duplex-Bench scores (asr, timing, rules, stats)",
        description="Score the outputs as Full-Duplex-Bench's evaluation does, sample by sample"
        " (resumable), then per task: scores.json, eval-samples.jsonl and a table beside the"
        " published figures.",
    )
    ev.add_argument("--root", type=Path, required=True, help="dataset root holding the tasks")
    ev.add_argument(
        "--task",
        dest="tasks",
        action="append",
        default=[],
        choices=KNOWN_TASKS,
        metavar="TASK",
        help="a task folder (repeatable; default: every known task present)",
    )
    ev.add_argument(
        "--prefix",
        default="",
        choices=["", "clean_", "both"],
        help='which pass: "" (output.wav), clean_ or both (default: "")',
    )
    ev.add_argument(
        "--stage",
        dest="stages",
        action="append",
        default=[],
        choices=STAGE_NAMES,
        metavar="STAGE",
        help=f"{', '.join(STAGE_NAMES)} (repeatable; default: every stage that can run here)",
    )
    ev.add_argument(
        "--fdb-repo",
        type=Path,
        default=None,
        metavar="PATH",
        help="your Full-Duplex-Bench checkout (backchannel ground truth, sha256-checked)",
    )
    ev.add_argument("--run-dir", type=Path, default=None, help="default: runs/eval-<time>")
    ev.add_argument(
        "--output-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where `bench --output-root` wrote the outputs (a read-only dataset); the"
        " evaluation's files go there too (default: beside the inputs)",
    )
    ev.add_argument(
        "--asr-model",
        default=PINNED_MODEL,
        metavar="PATH.nemo|ID",
        help=f"asr: a .nemo file, or {PINNED_MODEL} (default; FDB's model, pinned by revision,"
        " from the Hugging Face cache or downloaded once)",
    )
    ev.add_argument(
        "--asr-python",
        type=Path,
        default=None,
        metavar="PATH",
        help="asr: the Python of the NeMo venv (default: $FDB_ASR_PYTHON, else"
        " .venv-asr/bin/python, made by `make asr-env`)",
    )
    ev.add_argument(
        "--fdb-compat",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="backchannel reads a 24 kHz output.wav as 16 kHz, as FDB does and its published"
        " figures carry (default: on); --no-fdb-compat: the corrected reading (both are kept)",
    )
    add_judge_options(ev)
    ev.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_judge_options(ev: argparse.ArgumentParser) -> None:
    from pipeline.evaluate.settings import JudgeSettings

    default = JudgeSettings()
    judge = ev.add_argument_group(
        "judge", "FDB's LLM judges, on any OpenAI-compatible endpoint (each request is billed)"
    )
    judge.add_argument(
        "--judge-base-url",
        default=default.base_url,
        metavar="URL",
        help="the endpoint, e.g. http://localhost:8000/v1 (default: the SDK's, api.openai.com)",
    )
    judge.add_argument(
        "--judge-api-key-env",
        default=default.api_key_env,
        metavar="NAME",
        help="the environment variable holding the key (default: %(default)s); the judge runs"
        " only when it is set and --fdb-repo is given",
    )
    judge.add_argument(
        "--judge-model",
        default=default.model,
        metavar="MODEL",
        help="override FDB's models (gpt-4o-2024-08-06 for v1.5 behaviour, gpt-4-turbo for"
        " v1.0 interruption); the scores are then not FDB's",
    )
    judge.add_argument(
        "--judge-timeout",
        type=float,
        default=default.timeout_s,
        metavar="S",
        help="seconds per request (default: %(default)s)",
    )
    judge.add_argument(
        "--judge-attempts",
        type=int,
        default=default.attempts,
        metavar="N",
        help="requests at most per ask: 429, 5xx and timeouts are retried with backoff, never"
        " 400/401/403 (default: %(default)s)",
    )
    judge.add_argument(
        "--judge-reasks",
        type=int,
        default=default.reasks,
        metavar="K",
        help="a reply that does not parse is asked again at most K times, then the sample fails"
        " with the raw replies (default: %(default)s)",
    )


def add_slurm_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slurm = sub.add_parser(
        "slurm",
        help="run the benchmark as a Slurm job array (submit, status, report, resubmit)",
        description="Full-Duplex-Bench as a Slurm job array: each task runs `bench` on its own"
        " shard of the samples inside the SIF; ledgers per task, one merged report.",
    )
    actions = slurm.add_subparsers(dest="slurm_command", required=True, metavar="ACTION")
    submit = actions.add_parser(
        "submit",
        help="write the job folder (sbatch script, settings, samples) and submit the array",
        description="Write a readable sbatch script into the job folder (--run-dir) and submit"
        " it: N array tasks (--shards), each `apptainer run` of --sif on its shard.",
    )
    add_settings_options(submit, "slurm")
    resubmit = actions.add_parser(
        "resubmit",
        help="submit a new array for the job's failed and missing samples only",
        description="Run only the samples the job's ledgers do not show done, with the job's"
        " settings (its slurm.toml); the array options given here win.",
    )
    resubmit.add_argument("job_dir", type=Path, metavar="JOB_DIR", help="the job's folder")
    add_settings_options(resubmit, "slurm", only=("slurm",))
    for name, text in (
        ("status", "each task's Slurm state and its shard's progress"),
        ("report", "merge the ledgers: ok/failed/missing per task folder; exit 1 unless all ok"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("job_dir", type=Path, metavar="JOB_DIR", help="the job's folder")
        action.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        if name == "report":
            action.add_argument(
                "--wait",
                action="store_true",
                help="first wait until no task of the job is pending, running or requeued",
            )
            action.add_argument(
                "--poll",
                type=float,
                default=5.0,
                metavar="S",
                help="with --wait: ask Slurm every S seconds (default 5)",
            )


def settings_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The settings actually given on the command line (repeated options as lists)."""
    settings = {s.name: s for s in setting_fields(SlurmSettings)}
    values: dict[str, Any] = {}
    for name, value in vars(ns).items():
        setting = settings.get(name)
        if setting is not None:  # not `command`, `config` or `verbose`
            values[name] = dict(value) if setting.kind == "prompts" else value
    return values
