"""Settings for a run: one dataclass, filled from defaults, then a TOML file, then the command line.

Precedence is command line > TOML file > defaults. The TOML file may hold any field of
:class:`InferSettings` (plus the aliases listed in ``_TOML_ALIASES``) and a ``[text_prompts]``
table of per-task text prompts. Relative paths in the file are resolved against the file's folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pipeline.dataset.discovery import KNOWN_TASKS

Profile = Literal["personaplex", "moshi"]
Pace = Literal["none", "realtime"]
Encoder = Literal["sphn", "webclient"]
PROFILES: tuple[str, ...] = get_args(Profile)
PACES: tuple[str, ...] = get_args(Pace)
ENCODERS: tuple[str, ...] = get_args(Encoder)
PREFIXES = ("", "clean_")

DEFAULT_VOICE_PROMPT = "NATF2.pt"
DEFAULT_TEXT_PROMPT = "You are a helpful and friendly assistant."


class ConfigError(ValueError):
    """A setting is wrong; the message names the setting (and the file) and the fix."""


@dataclass(frozen=True)
class InferSettings:
    """Everything `python -m pipeline infer` needs to know. Holds no secrets."""

    server: str = "localhost:8998"
    root: Path | None = None
    tasks: tuple[str, ...] = ()  # empty: every known task folder present under root
    prefix: str = ""
    overwrite: bool = False
    voice_prompt: str = DEFAULT_VOICE_PROMPT
    text_prompt: str = DEFAULT_TEXT_PROMPT
    text_prompts: dict[str, str] = field(default_factory=dict)  # per-task overrides
    profile: Profile = "personaplex"
    pace: Pace = "none"
    # Opus settings: "webclient" as the servers' own web client (cheap); "sphn" as the servers'
    # writer and the Full-Duplex-Bench reference clients (voip, ~10x the CPU)
    encoder: Encoder = "webclient"
    run_dir: Path | None = None  # default: runs/<run id>
    insecure: bool = False
    connect_timeout_s: float = 30.0  # TCP + HTTP upgrade
    handshake_timeout_s: float = 600.0  # upgrade -> 0x00 (a loaded GPU server may queue us)
    stall_timeout_s: float = 60.0  # no message at all for this long mid-sample
    connect_retries: int = 5  # tries for a connection refused/closed before the handshake
    sample_retries: int = 2  # extra sessions for a sample that failed mid-stream
    retry_backoff_s: float = 1.0  # first wait before reconnecting; doubles each try (max 30 s)

    def text_prompt_for(self, task: str) -> str:
        return self.text_prompts.get(task, self.text_prompt)

    def validate(self) -> InferSettings:
        if self.profile not in PROFILES:
            raise ConfigError(f"profile {self.profile!r} is unknown; use one of {PROFILES}")
        if self.pace not in PACES:
            raise ConfigError(f"pace {self.pace!r} is unknown; use one of {PACES}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder {self.encoder!r} is unknown; use one of {ENCODERS}")
        if self.prefix not in PREFIXES:
            raise ConfigError(f"prefix {self.prefix!r} is unknown; use '' or 'clean_'")
        for name in (
            "connect_timeout_s",
            "handshake_timeout_s",
            "stall_timeout_s",
            "retry_backoff_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds")
        for name in ("connect_retries", "sample_retries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        for task in self.text_prompts:
            if task not in KNOWN_TASKS:
                raise ConfigError(
                    f"text prompt for unknown task {task!r}; known tasks: {', '.join(KNOWN_TASKS)}"
                )
        if self.profile == "personaplex":
            prompts = {"text_prompt": self.text_prompt} | {
                f"text_prompts.{t}": p for t, p in self.text_prompts.items()
            }
            for key, value in prompts.items():
                if not value.strip():
                    raise ConfigError(
                        f"{key} is empty: the PersonaPlex server crashes on an empty text prompt;"
                        " give a non-empty --text-prompt"
                    )
            if not self.voice_prompt.strip():
                raise ConfigError("voice_prompt is empty; give e.g. --voice-prompt NATF2.pt")
        return self


Runtime = Literal["docker", "apptainer", "local"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
DEFAULT_HF_REPO = "nvidia/personaplex-7b-v1"


@dataclass(frozen=True)
class BenchSettings(InferSettings):
    """`python -m pipeline bench`: the client's settings plus the server's lifecycle."""

    runtime: Runtime = "docker"
    image: str = "fdb-server:latest"  # Docker image
    sif: Path | None = None  # Apptainer image
    port: int = 8998  # first server's host port (next GPUs: +1, +2, ...); 0 picks free ports
    gpus: str = "0"  # "0,1,2,3": one server per GPU; "none": one CPU server; "cpu0,cpu1": two
    startup_timeout_s: float = 1800.0  # first download of a 7B model and its load
    stop_grace_s: float = 10.0
    max_restarts: int = 2  # per server, when it dies mid-run
    warmup: bool = True
    hf_cache: Path = Path("~/.cache/huggingface")
    hf_repo: str = ""  # "": the server's default (PersonaPlex: nvidia/personaplex-7b-v1)
    server_command: str = ""  # replaces `python -m moshi.server` (e.g. a launcher script)
    server_args: tuple[str, ...] = ()  # extra server flags, e.g. local weight paths
    mounts: tuple[str, ...] = ()  # "HOST:CONTAINER" folders for the container runtimes

    def devices(self) -> list[str]:
        """One entry per server: GPU indices, or "cpu" names ("none": one CPU server)."""
        text = self.gpus.strip().lower()
        if text in ("", "none"):
            return ["cpu"]
        return [g.strip() for g in text.split(",") if g.strip()]

    def gpu_list(self) -> list[str | None]:
        """The GPU of each server (None: CPU, for devices named cpu, cpu0, cpu1, ...)."""
        return [None if d.startswith("cpu") else d for d in self.devices()]

    def validate(self) -> BenchSettings:
        super().validate()
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime {self.runtime!r} is unknown; use one of {RUNTIMES}")
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
            raise ConfigError("--runtime apptainer needs --sif IMAGE.sif")
        return self


_TOML_ALIASES = {"voice": "voice_prompt", "server_ip": "server", "task": "tasks"}
_PATH_FIELDS = {"root", "run_dir", "sif", "hf_cache"}
_TUPLE_FIELDS = {"tasks", "server_args", "mounts"}


def _fields(cls: type[InferSettings]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(
    fields: dict[str, dataclasses.Field[Any]],
    name: str,
    value: Any,
    base_dir: Path | None,
    origin: str,
) -> Any:
    """Check a raw value's type against the field and convert it (paths, tuples)."""
    kind = fields[name].type
    if name in _PATH_FIELDS:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{origin}: {name} must be a path string")
        path = Path(value).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return path
    if name in _TUPLE_FIELDS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{origin}: {name} must be a list of strings")
        return tuple(value)
    if name == "text_prompts":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{origin}: [text_prompts] must map task names to strings")
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
    fields = _fields(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = _TOML_ALIASES.get(key, key.replace("-", "_"))
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"config file {path}: unknown key {key!r}; known keys: {known}")
        values[name] = _coerce(fields, name, value, path.parent.resolve(), f"config file {path}")
    return values


def _resolve(cls: type[InferSettings], cli_values: dict[str, Any], config_file: Path | None) -> Any:
    fields = _fields(cls)
    file_values = load_toml(config_file, cls) if config_file is not None else {}
    merged = dict(file_values)
    for name, value in cli_values.items():
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
        merged[name] = _coerce(fields, name, value, None, "command line")
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
