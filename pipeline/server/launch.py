"""Turn bench settings into server backends: the runtime's pre-flight checks, ports, command
lines, environment. Everything that differs between runtimes is the runtime's own
(`runtimes.RUNTIMES`)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import CPU_DEVICE, DEFAULT_HF_REPO, DEVICE_FLAG, BenchSettings
from pipeline.server.base import RUN_ID_ENV, ServerBackend, ServerSpec
from pipeline.server.preflight import (
    GpuFacts,
    PortReservation,
    VoiceChoice,
    check_voice,
    check_weights,
    choose_ports,
    hf_token,
)
from pipeline.server.runtime import Runtime, ServerView
from pipeline.server.runtimes import runtime_named

UPSTREAM_HF_REPO = "kyutai/moshiko-pytorch-bf16"
LOCAL_WEIGHT_FLAGS = ("--moshi-weight", "--config-path")
# Hugging Face settings a user may have set for their machine: the servers get them too
PASSED_THROUGH = ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER")


@dataclass
class LaunchPlan:
    backends: list[ServerBackend]
    voice_prompt: str  # what the sessions send (a mounted path for custom voices)
    model_repo: str
    local_weights: bool
    gpu: GpuFacts | None
    ports: PortReservation = field(default_factory=PortReservation)  # held until teardown


def model_repo(settings: BenchSettings) -> str:
    if settings.hf_repo:
        return settings.hf_repo
    return DEFAULT_HF_REPO if settings.profile == "personaplex" else UPSTREAM_HF_REPO


def uses_local_weights(settings: BenchSettings) -> bool:
    return any(a.split("=")[0] in LOCAL_WEIGHT_FLAGS for a in settings.server_args)


def server_command(
    settings: BenchSettings, view: ServerView, port: int, gpu: str | None
) -> list[str]:
    """`python -m moshi.server` (or --server-command) with the flags this tool controls."""
    base = shlex.split(settings.server_command) or [view.python, "-m", "moshi.server"]
    # A literal IP: PersonaPlex resolves localhost/0.0.0.0 through a UDP socket to 8.8.8.8,
    # which crashes on nodes with no route. PersonaPlex binds every interface anyway.
    args = ["--host", view.host, "--port", str(port), "--static", "none"]
    if settings.hf_repo:
        args += ["--hf-repo", settings.hf_repo]
    if view.voice_dir is not None:
        args += ["--voice-prompt-dir", view.voice_dir]
    return [*base, *args, *device_args(settings, gpu), *settings.server_args]


def device_args(settings: BenchSettings, gpu: str | None) -> list[str]:
    """A CPU server is told so (both servers default to `--device cuda`), unless a --server-arg
    already says it (BenchSettings.validate refuses any other device for a CPU server); a GPU
    server keeps its default and sees only its card."""
    if gpu is None and settings.server_device() is None:
        return [DEVICE_FLAG, CPU_DEVICE]
    return []


def device_env(gpu: str | None) -> dict[str, str]:
    """A CPU server sees no GPU: none for CUDA, none for the NVIDIA container runtime (where it
    is Docker's default runtime an image's NVIDIA_VISIBLE_DEVICES=all would show every card)."""
    return {} if gpu is not None else {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}


def server_env(run_id: str, hf_home: str, hf_cache: Path | None = None) -> dict[str, str]:
    """The server's environment: ours, the user's Hugging Face settings, and the token (from
    the environment or a saved login; shown nowhere: ServerSpec.public_env masks it)."""
    # HF_HUB_CACHE too: one left in the user's shell would send a local server to another cache
    # than the one pre-flight checked (HF_HOME/hub)
    env = {
        "NO_TORCH_COMPILE": "1",
        RUN_ID_ENV: run_id,
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": f"{hf_home.rstrip('/')}/hub",
    }
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    token = hf_token(hf_cache)
    if token:
        env["HF_TOKEN"] = token
    return env


def plan_servers(settings: BenchSettings, run_id: str, run_dir: Path) -> LaunchPlan:
    """Every pre-flight check, then one backend per device (not started yet)."""
    runtime = runtime_named(settings.runtime)(settings)
    gpus = settings.gpu_list()
    local_weights = uses_local_weights(settings)
    repo = model_repo(settings)
    hf_cache = settings.hf_cache.expanduser().resolve()  # Docker needs absolute paths
    if settings.profile == "personaplex":
        voice = check_voice(settings.voice_prompt)
    else:  # upstream moshi takes no voice prompt
        voice = VoiceChoice(settings.voice_prompt)
    gpu_info = runtime.preflight(next((g for g in gpus if g is not None), None))
    check_weights(hf_cache, repo, local_weights)
    hf_cache.mkdir(parents=True, exist_ok=True)
    reserved = choose_ports(settings.port, len(gpus))
    try:
        backends = _backends(settings, runtime, voice, hf_cache, reserved.ports, run_id, run_dir)
    except BaseException:
        reserved.release()
        raise
    return LaunchPlan(backends, voice.query_value, repo, local_weights, gpu_info, reserved)


def _backends(
    settings: BenchSettings,
    runtime: Runtime,
    voice: VoiceChoice,
    hf_cache: Path,
    ports: list[int],
    run_id: str,
    run_dir: Path,
) -> list[ServerBackend]:
    """One backend per device, each on its port."""
    gpus = settings.gpu_list()
    view = runtime.view(hf_cache, voice)
    env = {**server_env(run_id, view.hf_home, hf_cache), **view.env}
    return [
        runtime.backend(
            ServerSpec(
                command=server_command(settings, view, view.inner_port or port, gpu),
                port=port,
                gpu=gpu,
                env={**env, **device_env(gpu)},
                mounts=dict(view.mounts),
                run_id=run_id,
                index=index,
            ),
            run_dir,
        )
        for index, (gpu, port) in enumerate(zip(gpus, ports, strict=True))
    ]
