"""What `bench` hands each server it starts: the device (`--gpus none` really means the CPU),
the Hugging Face home and the token (from the environment or a saved login; the server's
environment only, never its command line, a log or the manifest)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipeline.config import BenchSettings
from pipeline.server.base import PreflightError
from pipeline.server.launch import LaunchPlan, plan_servers, server_command
from pipeline.server.local import LocalRuntime
from pipeline.server.preflight import VoiceChoice, check_weights, hf_token

TOKEN = "hf_savedLoginToken0123456789"
# A stand-in server command: records what the server process was given, then exits.
RECORDER = """import json, os, sys
with open(os.environ["RECORD_TO"], "w") as fh:
    json.dump({"argv": sys.argv, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "token": os.environ.get("HF_TOKEN"), "hf_home": os.environ.get("HF_HOME"),
               "hub_cache": os.environ.get("HF_HUB_CACHE")}, fh)
"""


@pytest.fixture
def clean_hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No token and no Hugging Face home from the developer's machine; HF_HOME is a fresh one."""
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "XDG_CACHE_HOME",
        "HF_HUB_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    return home


def recorder_settings(tmp_path: Path, **kw: object) -> BenchSettings:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    values: dict[str, object] = {
        "runtime": "local",
        "gpus": "none",
        "port": 0,
        "server_command": f"{sys.executable} {script}",
        **kw,
    }
    return BenchSettings(**values).validate()  # type: ignore[arg-type]


def run_recorder(plan: LaunchPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:  # type: ignore[type-arg]
    """Start the first server of ``plan`` (the recorder) and read what it was given."""
    record = tmp_path / "record.json"
    monkeypatch.setenv("RECORD_TO", str(record))
    backend = plan.backends[0]
    try:
        backend.start()
        assert backend.proc is not None  # type: ignore[attr-defined]
        assert backend.proc.wait(timeout=30) == 0  # type: ignore[attr-defined]
    finally:
        backend.stop()
        plan.ports.release()
    seen: dict = json.loads(record.read_text())  # type: ignore[type-arg]
    return seen


def test_gpus_none_hides_the_gpus_and_tells_the_server_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_hf_env: Path
) -> None:
    """Both servers default to --device cuda, and a job's CUDA_VISIBLE_DEVICES would reach a
    local server: a CPU server gets --device cpu and sees no GPU, and the manifest says so."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what a GPU job's launcher sets
    settings = recorder_settings(tmp_path, gpus="cpu0,cpu1", server_args=("--moshi-weight=w",))
    plan = plan_servers(settings, "rid", tmp_path / "run")
    for backend in plan.backends:
        command = backend.spec.command
        assert command[command.index("--device") + 1] == "cpu"
        assert backend.spec.env["CUDA_VISIBLE_DEVICES"] == ""
        assert backend.spec.env["NVIDIA_VISIBLE_DEVICES"] == "void"  # Docker's NVIDIA runtime
        doc = backend.describe()
        assert (doc["device"], doc["gpu"], doc["env"]["CUDA_VISIBLE_DEVICES"]) == ("cpu", None, "")
    seen = run_recorder(plan, tmp_path, monkeypatch)
    assert seen["cuda"] == ""  # the job's GPU is hidden from the real process
    assert seen["argv"][seen["argv"].index("--device") + 1] == "cpu"


def test_a_device_given_by_the_user_is_not_given_twice(tmp_path: Path) -> None:
    settings = recorder_settings(tmp_path, server_args=("--device=cpu", "--moshi-weight=w"))
    view = LocalRuntime(settings).view(tmp_path, VoiceChoice("NATF2.pt"))
    command = server_command(settings, view, 1234, None)
    assert "--device" not in command and command.count("--device=cpu") == 1
    gpu = server_command(BenchSettings(), view, 1234, "0")
    assert not any(a.startswith("--device") for a in gpu)  # a GPU server keeps its default


def test_the_saved_login_token_counts_and_reaches_only_the_servers_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_hf_env: Path
) -> None:
    """`hf auth login` saved the token under HF_HOME; HF_TOKEN is not set. Pre-flight accepts
    it for gated weights that are not cached, and the server gets it in its environment."""
    repo = "nvidia/personaplex-7b-v1"
    cache = tmp_path / "cache"
    with pytest.raises(PreflightError, match=r"no Hugging Face token.*hf auth login"):
        check_weights(cache, repo, local_weights=False)
    (clean_hf_env / "token").write_text(TOKEN + "\n")
    check_weights(cache, repo, local_weights=False)  # the saved login is a token
    settings = recorder_settings(tmp_path, hf_cache=cache, profile="moshi", hf_repo=repo)
    plan = plan_servers(settings, "rid", tmp_path / "run")
    backend = plan.backends[0]
    shown = json.dumps(backend.describe())  # what the manifest records of the server
    assert TOKEN not in shown and TOKEN not in " ".join(backend.spec.command)
    seen = run_recorder(plan, tmp_path, monkeypatch)
    assert seen["token"] == TOKEN and seen["hf_home"] == str(cache)
    assert TOKEN not in " ".join(seen["argv"])
    assert TOKEN not in backend.log_path.read_text()


def test_a_hub_cache_in_the_users_shell_does_not_move_the_servers_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_hf_env: Path
) -> None:
    """Pre-flight looks for the weights in --hf-cache's hub folder; a local server inherits the
    user's shell, where HF_HUB_CACHE would win over HF_HOME: the server gets ours."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the weights are not cached: pre-flight wants one
    cache = tmp_path / "cache"
    plan = plan_servers(recorder_settings(tmp_path, hf_cache=cache), "rid", tmp_path / "run")
    seen = run_recorder(plan, tmp_path, monkeypatch)
    assert (seen["hf_home"], seen["hub_cache"]) == (str(cache), str(cache / "hub"))


def test_where_the_token_is_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_hf_env: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    assert hf_token(cache) is None
    (cache / "token").write_text("hf_inTheServersCache1")  # the server's own HF_HOME
    assert hf_token(cache) == "hf_inTheServersCache1"
    (clean_hf_env / "token").write_text("hf_inTheUsersHome1")  # the user's HF_HOME first
    assert hf_token(cache) == "hf_inTheUsersHome1"
    named = tmp_path / "elsewhere"
    named.write_text("hf_atTokenPath1\n")
    monkeypatch.setenv("HF_TOKEN_PATH", str(named))  # replaces HF_HOME/token
    assert hf_token(cache) == "hf_atTokenPath1"
    monkeypatch.setenv("HF_TOKEN", "hf_fromTheEnvironment1")  # the environment beats any file
    assert hf_token(cache) == "hf_fromTheEnvironment1"
