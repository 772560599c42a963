"""Turn bench settings into server backends: pre-flight checks, ports, command lines, mounts."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import DEFAULT_HF_REPO, BenchSettings
from pipeline.server.apptainer_backend import ApptainerBackend, find_runtime
from pipeline.server.base import SERVER_PORT, PreflightError, ServerBackend, ServerSpec
from pipeline.server.docker_backend import NO_GPU_RUNTIME_HINT, DockerBackend, docker_client
from pipeline.server.local import LocalProcessBackend
from pipeline.server.preflight import (
    VOICE_MOUNT,
    GpuFacts,
    VoiceChoice,
    check_voice,
    check_weights,
    choose_ports,
    gpu_facts,
    hf_token,
    require_nvidia_smi,
)

CONTAINER_HF_HOME = "/cache/huggingface"
UPSTREAM_HF_REPO = "kyutai/moshiko-pytorch-bf16"
RUN_ID_ENV = "FDB_PIPELINE_RUN_ID"  # lets `cleanup` find a crashed run's server processes
LOCAL_WEIGHT_FLAGS = ("--moshi-weight", "--config-path")
# Hugging Face settings a user may have set for their machine: the containers get them too
PASSED_THROUGH = ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER")


@dataclass
class LaunchPlan:
    backends: list[ServerBackend]
    voice_prompt: str  # what the sessions send (a mounted path for custom voices)
    model_repo: str
    local_weights: bool
    gpu: GpuFacts | None


def model_repo(settings: BenchSettings) -> str:
    if settings.hf_repo:
        return settings.hf_repo
    return DEFAULT_HF_REPO if settings.profile == "personaplex" else UPSTREAM_HF_REPO


def uses_local_weights(settings: BenchSettings) -> bool:
    return any(a.split("=")[0] in LOCAL_WEIGHT_FLAGS for a in settings.server_args)


def server_command(
    settings: BenchSettings, python: str, host: str, port: int, voice_dir: str | None = None
) -> list[str]:
    """`python -m moshi.server` (or --server-command) with the flags this tool controls."""
    base = shlex.split(settings.server_command) or [python, "-m", "moshi.server"]
    # A literal IP: PersonaPlex resolves localhost/0.0.0.0 through a UDP socket to 8.8.8.8,
    # which crashes on nodes with no route. PersonaPlex binds every interface anyway.
    args = ["--host", host, "--port", str(port), "--static", "none"]
    if settings.hf_repo:
        args += ["--hf-repo", settings.hf_repo]
    if voice_dir is not None:
        args += ["--voice-prompt-dir", voice_dir]
    return [*base, *args, *settings.server_args]


def _docker_gpu_probe(client: Any, image: str, gpu: str) -> None:
    """Start a throw-away container with the GPU request: the exact error a run would hit."""
    from docker.errors import APIError
    from docker.types import DeviceRequest

    container = None
    try:
        container = client.containers.create(
            image,
            ["true"],
            device_requests=[DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])],
        )
        container.start()
    except APIError as exc:
        if "could not select device driver" in str(exc) or "nvidia" in str(exc).lower():
            raise PreflightError(f"{NO_GPU_RUNTIME_HINT} (Docker said: {exc})") from None
    finally:
        if container is not None:
            container.remove(force=True)


def plan_servers(settings: BenchSettings, run_id: str, run_dir: Path) -> LaunchPlan:
    """Every pre-flight check, then one backend per GPU (not started yet)."""
    gpus = settings.gpu_list()
    first_gpu = next((g for g in gpus if g is not None), None)
    local_weights = uses_local_weights(settings)
    repo = model_repo(settings)
    hf_cache = settings.hf_cache.expanduser().resolve()  # Docker needs absolute paths
    if settings.profile == "personaplex":
        voice = check_voice(settings.voice_prompt)
    else:  # upstream moshi takes no voice prompt
        voice = VoiceChoice(settings.voice_prompt)
    gpu_info: GpuFacts | None = None

    client: Any = None
    if settings.runtime == "docker":
        from docker.errors import ImageNotFound

        client = docker_client()
        try:
            client.images.get(settings.image)
        except ImageNotFound:
            raise PreflightError(
                f"Docker image {settings.image} not found; build it with `make image` or pass"
                " --image NAME"
            ) from None
        if first_gpu is not None:
            _docker_gpu_probe(client, settings.image, first_gpu)
            gpu_info = gpu_facts()  # the host's nvidia-smi, where the driver put one
    elif settings.runtime == "apptainer":
        runtime = find_runtime()
        if settings.sif is None or not settings.sif.is_file():
            raise PreflightError(f"Apptainer image {settings.sif} not found; build it: make sif")
        if first_gpu is not None:
            gpu_info = require_nvidia_smi("apptainer")
    else:
        if first_gpu is not None:
            gpu_info = require_nvidia_smi("local")
        if not settings.server_command and importlib.util.find_spec("moshi") is None:
            raise PreflightError(
                f"the moshi server package is not installed in {sys.executable}: install it"
                " (PersonaPlex: pip install 'moshi @ git+https://github.com/NVIDIA/personaplex"
                "#subdirectory=moshi'), run inside the project's image, or pass"
                " --server-command"
            )
    check_weights(hf_cache, repo, local_weights)
    hf_cache.mkdir(parents=True, exist_ok=True)
    ports = choose_ports(settings.port, len(gpus))

    env = {"NO_TORCH_COMPILE": "1", RUN_ID_ENV: run_id}
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    token = hf_token()
    if token:
        env["HF_TOKEN"] = token
    # What the server sees: local paths as they are; in a container, mounted folders
    mounts: dict[Path, str] = {}
    if settings.runtime == "local":
        python, hf_home = sys.executable, str(hf_cache)
        voice_dir = str(voice.folder) if voice.folder else None
    else:
        python, hf_home = "python", CONTAINER_HF_HOME
        mounts[hf_cache] = CONTAINER_HF_HOME
        for mount in settings.mounts:
            host_dir, _, inside = mount.partition(":")
            mounts[Path(host_dir).expanduser().resolve()] = inside
        voice_dir = None
        if voice.folder is not None:
            mounts[voice.folder] = VOICE_MOUNT
            voice_dir = VOICE_MOUNT
    # Docker: upstream moshi really binds --host, and the published port reaches the container's
    # own interface, so it needs every interface; PersonaPlex binds all of them regardless.
    # Elsewhere the server shares the host's network: loopback only.
    in_docker = settings.runtime == "docker"
    host = "0.0.0.0" if in_docker and settings.profile == "moshi" else "127.0.0.1"
    backends: list[ServerBackend] = []
    for index, (gpu, port) in enumerate(zip(gpus, ports, strict=True)):
        spec = ServerSpec(
            command=server_command(
                settings, python, host, SERVER_PORT if in_docker else port, voice_dir
            ),
            port=port,
            gpu=gpu,
            env={**env, "HF_HOME": hf_home},
            mounts=dict(mounts),
            run_id=run_id,
            index=index,
        )
        if settings.runtime == "local":
            backends.append(LocalProcessBackend(spec, run_dir))
        elif in_docker:
            backends.append(DockerBackend(spec, run_dir, settings.image, client=client))
        else:
            assert settings.sif is not None  # validated: apptainer needs --sif
            backends.append(ApptainerBackend(spec, run_dir, settings.sif, runtime))
    return LaunchPlan(backends, voice.query_value, repo, local_weights, gpu_info)
