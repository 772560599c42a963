"""Settings for a run: one dataclass, filled from defaults, then a TOML file, then the command line.

Precedence is command line > TOML file > defaults. The TOML file may hold any field of
:class:`InferSettings` (plus each field's ``toml_aliases``) and a ``[text_prompts]`` table of
per-task text prompts. Relative paths in the file are resolved against the file's folder.

Each field is declared once, with :func:`option`: its default, its help, its command-line flags
(none: the field is TOML-only) and its help group. The command line (``pipeline.cli.options``)
and the README's option tables are built from, or checked against, these declarations.
"""

# option() returns a dataclasses.field (a mutable default is copied per instance): not a shared
# call result, which is what RUF009 guards against.
# ruff: noqa: RUF009

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import tomllib
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from pipeline.dataset.discovery import KNOWN_TASKS
from pipeline.stream.opus import DEFAULT_ENCODER
from pipeline.stream.protocol import DEFAULT_PORT, FRAME_MS, PromptError, require_prompt

Profile = Literal["personaplex", "moshi"]
Pace = Literal["none", "realtime"]
Encoder = Literal["sphn", "webclient"]
Prefix = Literal["", "clean_", "both"]
Runtime = Literal["docker", "apptainer", "local"]
Container = Literal["apptainer", "none"]
PROFILES: tuple[str, ...] = get_args(Profile)
PACES: tuple[str, ...] = get_args(Pace)
ENCODERS: tuple[str, ...] = get_args(Encoder)
PREFIXES: tuple[str, ...] = get_args(Prefix)
RUNTIMES: tuple[str, ...] = get_args(Runtime)

DEFAULT_VOICE_PROMPT = "NATF2.pt"
DEFAULT_TEXT_PROMPT = "You are a helpful and friendly assistant."
DEFAULT_HF_REPO = "nvidia/personaplex-7b-v1"
DEVICE_FLAG = "--device"  # the servers' device flag (both default to cuda)
CPU_DEVICE = "cpu"

Group = Literal["server", "dataset", "session", "records", "slurm"]
GROUPS: tuple[str, ...] = get_args(Group)  # the order of the groups in the help
Command = Literal["infer", "bench", "slurm"]  # slurm: `slurm submit`
# What a field holds, as the TOML reader and the command line treat it
Kind = Literal["path", "strings", "prompts", "choice", "bool", "int", "float", "str"]

_T = TypeVar("_T")
_METADATA_KEY = "option"


class ConfigError(ValueError):
    """A setting is wrong; the message names the setting (and the file) and the fix."""


@dataclass(frozen=True)
class Option:
    """How a settings field is offered to the user (its ``dataclasses.field`` metadata)."""

    help: str
    group: Group
    flags: tuple[str, ...] = ()  # the first is the main one; none: a TOML-only setting
    metavar: str | None = None
    # words for a default whose value says nothing by itself ("" or None: decided elsewhere)
    shown_default: str | None = None
    toml_aliases: tuple[str, ...] = ()  # other keys the TOML file accepts for this field
    commands: tuple[Command, ...] | None = None  # None: every command whose settings hold it


def option(
    default: _T,
    *,
    help: str,
    group: Group,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    shown_default: str | None = None,
    toml_aliases: tuple[str, ...] = (),
    commands: tuple[Command, ...] | None = None,
) -> _T:
    """A settings field: its one default, and how it is offered (see :class:`Option`).

    A mutable default (a dict) is copied for each instance.
    """
    opt = Option(help, group, flags, metavar, shown_default, toml_aliases, commands)
    meta = {_METADATA_KEY: opt}
    if isinstance(default, dict | list | set):
        factory = functools.partial(copy.copy, default)
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def computed_option(factory: Callable[[], _T], *, shown_default: str, **how: Any) -> _T:
    """A settings field whose default is computed for each instance (from the environment);
    ``shown_default`` says how, ``how`` as for :func:`option`."""
    opt = Option(shown_default=shown_default, **how)
    return dataclasses.field(default_factory=factory, metadata={_METADATA_KEY: opt})


def default_hf_home() -> Path:
    """The Hugging Face home as huggingface_hub finds it: ``$HF_HOME``, else
    ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``."""
    env = os.environ
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "huggingface"


@dataclass(frozen=True)
class Setting:
    """One settings field, as the command line and the TOML reader see it."""

    name: str
    kind: Kind
    default: Any
    option: Option
    choices: tuple[str, ...] = ()  # for a Literal-typed field

    @property
    def flag(self) -> str | None:
        """The main command-line flag; None for a TOML-only setting."""
        return self.option.flags[0] if self.option.flags else None

    def offered_by(self, command: Command) -> bool:
        """Whether ``command``'s parser has this setting as an option."""
        commands = self.option.commands
        return bool(self.option.flags) and (commands is None or command in commands)


_SCALARS: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}


def _kind(hint: Any) -> tuple[Kind, tuple[str, ...]]:
    """What a field's (resolved) type makes it: its kind and, for a Literal, its choices."""
    origin = get_origin(hint)
    if origin is Literal:
        return "choice", get_args(hint)
    if origin in (Union, types.UnionType):  # X | None: None stands for "decided elsewhere"
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        return _kind(inner)
    if origin is tuple:
        return "strings", ()
    if origin is dict:
        return "prompts", ()
    if hint in _SCALARS:
        return _SCALARS[hint], ()
    raise TypeError(f"settings field type {hint!r} is not supported")


def setting_fields(cls: type[InferSettings]) -> tuple[Setting, ...]:
    """The fields of a settings class, in order, each with its default, kind and option."""
    hints = get_type_hints(cls)
    settings = []
    for f in dataclasses.fields(cls):
        opt = f.metadata.get(_METADATA_KEY)
        if not isinstance(opt, Option):
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        kind, choices = _kind(hints[f.name])
        settings.append(Setting(f.name, kind, default, opt, choices))
    return tuple(settings)


def _settings_by_name(cls: type[InferSettings]) -> dict[str, Setting]:
    return {s.name: s for s in setting_fields(cls)}


def flag_for(name: str, cls: type[InferSettings] | None = None) -> str:
    """How a user sets ``name``: its main command-line flag, or its TOML key if it has none."""
    setting = _settings_by_name(cls or BenchSettings)[name]
    return setting.flag or name


@dataclass(frozen=True)
class InferSettings:
    """Everything `python -m pipeline infer` needs to know. Holds no secrets."""

    server: str = option(
        f"localhost:{DEFAULT_PORT}",
        flags=("--server", "--server-ip", "--server_ip"),
        toml_aliases=("server_ip",),
        commands=("infer",),  # `bench` starts its own servers
        group="server",
        help="host:port, ws://host:port or wss://host:port",
    )
    root: Path | None = option(
        None, flags=("--root",), group="dataset", help="dataset root holding the task folders"
    )
    tasks: tuple[str, ...] = option(
        (),
        flags=("--task",),
        metavar="TASK",
        toml_aliases=("task",),
        shown_default="every known task present",
        group="dataset",
        help=f"task folder: {', '.join(KNOWN_TASKS)}",
    )
    prefix: Prefix = option(
        "",
        flags=("--prefix",),
        group="dataset",
        help="'' reads input.wav and writes output.wav; 'clean_' the clean_input.wav pair;"
        " 'both' runs both passes in one run (v1.5 tasks; v1.0 tasks have no clean pass)",
    )
    output_root: Path | None = option(
        None,
        flags=("--output-root",),
        metavar="DIR",
        shown_default="beside the inputs",
        group="dataset",
        help="write outputs (and their locks) under DIR, mirroring the dataset's"
        " <task>/<sample id>/ folders: for a read-only dataset",
    )
    shard: str = option(
        "",
        flags=("--shard",),
        metavar="K/N",
        shown_default="all samples",
        group="dataset",
        help="run only shard K (0-based) of N: the samples dealt by duration, the same every"
        " time (a Slurm array task's share)",
    )
    samples_file: Path | None = option(
        None,
        flags=("--samples-file",),
        metavar="FILE",
        shown_default="all samples",
        group="dataset",
        help="run only the samples FILE lists, one key a line as samples.jsonl writes them"
        " (task/id, or task/id (clean_)); `slurm resubmit` writes one",
    )
    overwrite: bool = option(
        False, flags=("--overwrite",), group="dataset", help="redo samples that are complete"
    )
    keep_other_settings: bool = option(
        False,
        flags=("--keep-other-settings",),
        group="dataset",
        help="count outputs made with other settings (profile, model, voice, prompt, encoder)"
        " as complete instead of redoing them",
    )
    voice_prompt: str = option(
        DEFAULT_VOICE_PROMPT,
        flags=("--voice-prompt", "--voice"),
        toml_aliases=("voice",),
        group="session",
        help="PersonaPlex voice prompt: one of the 18 built-in voices, or a .pt/.wav file",
    )
    text_prompt: str = option(
        DEFAULT_TEXT_PROMPT,
        flags=("--text-prompt",),
        group="session",
        help="PersonaPlex text (system) prompt",
    )
    text_prompts: dict[str, str] = option(
        {},
        flags=("--task-text-prompt",),
        metavar="TASK=PROMPT",
        group="session",
        help="a task's own text prompt; adds to the file's [text_prompts]",
    )
    profile: Profile = option(
        "personaplex",
        flags=("--profile",),
        group="session",
        help="server flavour: personaplex (prompts, N frames out) or moshi (no prompts, N-1 out)",
    )
    pace: Pace = option(
        "none",
        flags=("--pace",),
        group="session",
        help=f"none: as fast as the server takes; realtime: {FRAME_MS} ms per frame, lag recorded",
    )
    # Opus settings: "webclient" as the servers' own web client (cheap); "sphn" as the servers'
    # writer and the Full-Duplex-Bench reference clients (voip, ~10x the CPU)
    encoder: Encoder = option(
        DEFAULT_ENCODER,
        flags=("--encoder",),
        group="session",
        help="Opus settings: sphn (voip, as the Full-Duplex-Bench reference clients: the server"
        " hears what it hears from them) or webclient (audio, complexity 0, as the servers' web"
        " client; ~10x cheaper, other audio)",
    )
    breaker: int = option(
        3,
        flags=("--breaker",),
        metavar="N",
        group="session",
        help="after this many samples in a row fail the same way on a server, restart it (bench)"
        " or stop the run (infer); the rest are recorded as not run. 0: never",
    )
    run_dir: Path | None = option(
        None,
        flags=("--run-dir",),
        shown_default="runs/<run id>",
        group="records",
        help="where manifest.json, samples.jsonl and the server logs go",
    )
    insecure: bool = option(
        False,
        flags=("--insecure",),
        group="session",
        help="accept a self-signed certificate on wss://",
    )
    connect_timeout_s: float = option(
        30.0,
        flags=("--connect-timeout",),
        metavar="S",
        group="session",
        help="TCP connect + WebSocket upgrade timeout",
    )
    handshake_timeout_s: float = option(
        600.0,
        flags=("--handshake-timeout",),
        metavar="S",
        group="session",
        help="wait for the server's 0x00 handshake (a busy server queues us)",
    )
    stall_timeout_s: float = option(
        60.0,
        flags=("--stall-timeout",),
        metavar="S",
        group="session",
        help="a sample fails after this long without any message",
    )
    connect_retries: int = option(
        5,
        flags=("--connect-retries",),
        metavar="N",
        group="session",
        help="reconnects (exponential backoff) when refused or closed before the handshake",
    )
    sample_retries: int = option(
        2,
        flags=("--sample-retries",),
        metavar="N",
        group="session",
        help="new sessions for a sample that failed mid-stream",
    )
    retry_backoff_s: float = option(
        1.0,
        flags=("--retry-backoff",),
        metavar="S",
        group="session",
        help="first reconnect wait, doubling each try",
    )

    def text_prompt_for(self, task: str) -> str:
        return self.text_prompts.get(task, self.text_prompt)

    def shard_of(self) -> tuple[int, int] | None:
        """``--shard K/N`` as (K, N); None for the whole dataset."""
        if not self.shard:
            return None
        k, sep, n = self.shard.partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise ConfigError(f"shard {self.shard!r}: use K/N, e.g. --shard 0/4 (K from 0 to N-1)")
        index, count = int(k), int(n)
        if not 0 <= index < count:
            raise ConfigError(f"shard {self.shard!r}: K must be 0 to N-1 (and N >= 1)")
        return index, count

    def validate(self) -> InferSettings:
        for setting in setting_fields(type(self)):
            value = getattr(self, setting.name)
            if setting.kind == "choice" and value not in setting.choices:
                raise ConfigError(
                    f"{setting.name} {value!r} is unknown; use one of {setting.choices}"
                )
        for name in (
            "connect_timeout_s",
            "handshake_timeout_s",
            "stall_timeout_s",
            "retry_backoff_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds")
        for name in ("connect_retries", "sample_retries", "breaker"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        for task in self.text_prompts:
            if task not in KNOWN_TASKS:
                raise ConfigError(
                    f"text prompt for unknown task {task!r}; known tasks: {', '.join(KNOWN_TASKS)}"
                )
        if self.profile == "personaplex":
            self._require_prompts()
        self.shard_of()
        return self

    def _require_prompts(self) -> None:
        """PersonaPlex's prompt rule (:func:`require_prompt`), naming the setting that breaks it."""
        prompts = [
            ("text_prompt", self.text_prompt, flag_for("text_prompt")),
            *(
                (f"text_prompts.{task}", prompt, f"{flag_for('text_prompts')} {task}=PROMPT")
                for task, prompt in self.text_prompts.items()
            ),
            ("voice_prompt", self.voice_prompt, flag_for("voice_prompt")),
        ]
        for key, value, fix in prompts:
            try:
                require_prompt(key, value)
            except PromptError as exc:
                what = "a non-empty" if not value.strip() else "a valid"
                raise ConfigError(f"{exc}; give {what} {fix}") from None


@dataclass(frozen=True)
class BenchSettings(InferSettings):
    """`python -m pipeline bench`: the client's settings plus the server's lifecycle."""

    runtime: Runtime = option(
        "docker",
        flags=("--runtime",),
        commands=("bench",),  # a Slurm task runs its server as a child (inside the SIF)
        group="server",
        help="docker, apptainer (HPC) or local (a child process)",
    )
    image: str = option(
        "fdb-server:latest",
        flags=("--image",),
        commands=("bench",),
        group="server",
        help="Docker image",
    )
    sif: Path | None = option(
        None,
        flags=("--sif",),
        group="server",
        help="Apptainer image (bench: --runtime apptainer; slurm submit: what each task runs)",
    )
    port: int = option(
        DEFAULT_PORT,
        flags=("--port",),
        group="server",
        help="host port of the first server (next ones +1); 0 picks free ports",
    )
    gpus: str = option(
        "0",
        flags=("--gpus",),
        commands=("bench",),  # a Slurm task uses the GPUs Slurm gives it (--gpus-per-task)
        group="server",
        help="one server per entry: 0,1,2,3; none = one CPU server; cpu0,cpu1 = two",
    )
    startup_timeout_s: float = option(
        1800.0,
        flags=("--startup-timeout",),
        metavar="S",
        group="server",
        help="wait this long for a server to load (a first 7B download and load takes long)",
    )
    stop_grace_s: float = option(
        10.0,
        flags=("--stop-grace",),
        metavar="S",
        group="server",
        help="SIGTERM, then kill after this long",
    )
    max_restarts: int = option(
        2,
        flags=("--max-restarts",),
        metavar="N",
        group="server",
        help="restarts of a server that dies mid-run, per server (its sample is retried)",
    )
    warmup: bool = option(
        True,
        flags=("--no-warmup",),
        group="server",
        help="one warm-up session per server before the samples; --no-warmup skips it",
    )
    hf_cache: Path = computed_option(
        default_hf_home,  # read when the settings are made: a user's HF_HOME wins
        flags=("--hf-cache",),
        metavar="DIR",
        shown_default="$HF_HOME, else ~/.cache/huggingface",
        group="server",
        help="Hugging Face cache, the server's HF_HOME (mounted into a container)",
    )
    hf_repo: str = option(
        "",
        flags=("--hf-repo",),
        shown_default="the server's own",
        group="server",
        help=f"model repository (PersonaPlex's own: {DEFAULT_HF_REPO})",
    )
    server_command: str = option(
        "",
        flags=("--server-command",),
        metavar="CMD",
        shown_default="python -m moshi.server",
        group="server",
        help="the server's command, e.g. a launcher script",
    )
    server_args: tuple[str, ...] = option(
        (),
        flags=("--server-arg",),
        metavar="ARG",
        group="server",
        help="extra server flag, e.g. --server-arg=--half",
    )
    mounts: tuple[str, ...] = option(
        (),
        flags=("--mount",),
        metavar="HOST:CONTAINER",
        group="server",
        help="extra folder for the container runtimes",
    )

    def devices(self) -> list[str]:
        """One entry per server: GPU indices, or "cpu" names ("none": one CPU server)."""
        text = self.gpus.strip().lower()
        if text in ("", "none"):
            return ["cpu"]
        return [g.strip() for g in text.split(",") if g.strip()]

    def gpu_list(self) -> list[str | None]:
        """The GPU of each server (None: CPU, for devices named cpu, cpu0, cpu1, ...)."""
        return [None if d.startswith("cpu") else d for d in self.devices()]

    def server_device(self) -> str | None:
        """The device a `--server-arg=--device=X` (or `--device`, `X`) asks for, if any."""
        args = self.server_args
        for i, arg in enumerate(args):
            if arg.startswith(f"{DEVICE_FLAG}="):
                return arg.split("=", 1)[1]
            if arg == DEVICE_FLAG and i + 1 < len(args):
                return args[i + 1]
        return None

    def validate(self) -> BenchSettings:
        super().validate()
        asked = self.server_device()
        if None in self.gpu_list() and asked not in (None, CPU_DEVICE):
            raise ConfigError(
                f"gpus {self.gpus!r} runs a server on the CPU, but a server_arg asks for"
                f" {DEVICE_FLAG} {asked}: drop that --server-arg, or give --gpus GPU indices"
            )
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port {self.port} is not a TCP port; use 1-65535, or 0 for free")
        for name in ("startup_timeout_s", "stop_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds")
        if self.max_restarts < 0:
            raise ConfigError("max_restarts must be >= 0")
        devices = self.devices()
        if len(set(devices)) != len(devices):
            raise ConfigError(f"gpus {self.gpus!r} names a device twice")
        for mount in self.mounts:
            host, sep, inside = mount.partition(":")
            if not sep or not host or not inside.startswith("/"):
                raise ConfigError(f"mount {mount!r}: use HOST_DIR:/ABSOLUTE/CONTAINER/DIR")
        if self.runtime == "apptainer" and self.sif is None:
            raise ConfigError(f"--runtime apptainer needs {flag_for('sif')} IMAGE.sif")
        return self


@dataclass(frozen=True)
class SlurmSettings(BenchSettings):
    """`python -m pipeline slurm submit`: `bench`'s settings (each array task runs `bench` on its
    shard) plus the job array's. ``run_dir`` is the job's folder."""

    shards: int = option(
        1,
        flags=("--shards",),
        metavar="N",
        group="slurm",
        help="array tasks: the samples are dealt into N shards (by duration), one task each",
    )
    partition: str = option(
        "", flags=("--partition",), shown_default="the cluster's", group="slurm", help="partition"
    )
    account: str = option(
        "", flags=("--account",), shown_default="yours", group="slurm", help="account to charge"
    )
    time_limit: str = option(
        "",
        flags=("--time",),
        shown_default="the partition's",
        group="slurm",
        help="time limit per task, in Slurm's format (e.g. 4:00:00); a task stopped by it"
        " resumes on resubmit",
    )
    gpus_per_task: int = option(
        1,
        flags=("--gpus-per-task",),
        metavar="G",
        group="slurm",
        help="GPUs per task, one server each; 0: a CPU server (tests, the demo)",
    )
    cpus_per_task: int = option(
        4, flags=("--cpus-per-task",), metavar="C", group="slurm", help="CPUs per task"
    )
    mem: str = option(
        "", flags=("--mem",), shown_default="the partition's", group="slurm", help="memory per task"
    )
    throttle: int = option(
        0,
        flags=("--throttle",),
        metavar="K",
        group="slurm",
        help="at most K tasks at once (the array's throttle); 0: as many as the queue gives",
    )
    term_before_s: int = option(
        120,
        flags=("--term-before",),
        metavar="S",
        group="slurm",
        help="SIGTERM this long before the time limit (--signal=B:TERM@S): the sample in flight"
        " ends cleanly and the server stops; 0: only Slurm's own at the limit",
    )
    requeue: bool = option(
        True,
        flags=("--no-requeue",),
        group="slurm",
        help="a preempted task is requeued and resumes from its ledger; --no-requeue: it is not",
    )
    sbatch_lines: tuple[str, ...] = option(
        (),
        flags=("--sbatch",),
        metavar="OPTION",
        group="slurm",
        help="an extra #SBATCH line, e.g. --sbatch=--qos=high",
    )
    container: Container = option(
        "apptainer",
        flags=("--container",),
        group="slurm",
        help="apptainer: each task runs `apptainer run` of --sif; none: this Python on the node"
        " (a node with the project and the server installed, as the tests use)",
    )
    job_name: str = option("fdb-bench", flags=("--job-name",), group="slurm", help="job name")

    def validate(self) -> SlurmSettings:
        super().validate()
        if self.shards < 1:
            raise ConfigError(f"shards {self.shards}: at least 1 (one array task each)")
        for name in ("gpus_per_task", "throttle", "term_before_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.cpus_per_task < 1:
            raise ConfigError("cpus_per_task must be >= 1")
        if self.container == "apptainer" and self.sif is None:
            raise ConfigError(
                f"slurm submit runs each task in an Apptainer image: pass {flag_for('sif')}"
                f" IMAGE.sif (make sif), or {flag_for('container', SlurmSettings)} none"
            )
        if self.root is None:
            raise ConfigError("no dataset root: pass --root DIR (or set root in the --config file)")
        if self.shard or self.samples_file is not None:
            raise ConfigError("slurm submit makes the shards itself: drop --shard/--samples-file")
        return self


def _coerce(setting: Setting, value: Any, base_dir: Path | None, origin: str) -> Any:
    """Check a raw value's type against the field and convert it (paths, tuples)."""
    name, kind = setting.name, setting.kind
    if kind == "path":
        if not isinstance(value, str | Path):
            raise ConfigError(f"{origin}: {name} must be a path string")
        path = Path(value).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return path
    if kind == "strings":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{origin}: {name} must be a list of strings")
        return tuple(value)
    if kind == "prompts":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{origin}: [{name}] must map task names to strings")
        return dict(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: {name} must be true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{origin}: {name} must be an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{origin}: {name} must be a number of seconds")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {name} must be a string")
    return value


def load_toml(path: Path, cls: type[InferSettings] = InferSettings) -> dict[str, Any]:
    """Read a TOML settings file into field values; unknown keys are an error naming the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the --config path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    fields = _settings_by_name(cls)
    aliases = {alias: s.name for s in fields.values() for alias in s.option.toml_aliases}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = aliases.get(key, key.replace("-", "_"))
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"config file {path}: unknown key {key!r}; known keys: {known}")
        origin = f"config file {path}"
        values[name] = _coerce(fields[name], value, path.parent.resolve(), origin)
    return values


def _resolve(cls: type[InferSettings], cli_values: dict[str, Any], config_file: Path | None) -> Any:
    fields = _settings_by_name(cls)
    file_values = load_toml(config_file, cls) if config_file is not None else {}
    merged = dict(file_values)
    for name, value in cli_values.items():
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
        merged[name] = _coerce(fields[name], value, None, "command line")
    if "text_prompts" in cli_values:  # per-task prompts add to (and override) the file's table
        merged["text_prompts"] = {
            **file_values.get("text_prompts", {}),
            **cli_values["text_prompts"],
        }
    return cls(**merged).validate()


def resolve_settings(cli_values: dict[str, Any], config_file: Path | None = None) -> InferSettings:
    """Merge defaults < TOML file < command line; ``cli_values`` holds only options given."""
    settings: InferSettings = _resolve(InferSettings, cli_values, config_file)
    return settings


def resolve_bench_settings(
    cli_values: dict[str, Any], config_file: Path | None = None
) -> BenchSettings:
    """As :func:`resolve_settings`, for `bench`."""
    settings: BenchSettings = _resolve(BenchSettings, cli_values, config_file)
    return settings


def resolve_slurm_settings(
    cli_values: dict[str, Any], config_file: Path | None = None
) -> SlurmSettings:
    """As :func:`resolve_settings`, for `slurm submit`."""
    settings: SlurmSettings = _resolve(SlurmSettings, cli_values, config_file)
    return settings
