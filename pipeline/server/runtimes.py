"""The runtimes by name: what `--runtime NAME` chooses and what `cleanup` visits."""

from __future__ import annotations

from pipeline.server.apptainer_backend import ApptainerRuntime
from pipeline.server.base import PreflightError
from pipeline.server.docker_backend import DockerRuntime
from pipeline.server.local import LocalRuntime
from pipeline.server.runtime import Runtime

RUNTIMES: dict[str, type[Runtime]] = {
    DockerRuntime.name: DockerRuntime,
    ApptainerRuntime.name: ApptainerRuntime,
    LocalRuntime.name: LocalRuntime,
}


def runtime_named(name: str) -> type[Runtime]:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise PreflightError(
            f"runtime {name!r} is unknown; use one of {', '.join(RUNTIMES)}"
        ) from None
