"""The Apptainer backend's command line and environment, with a stand-in `apptainer` on PATH
that records its argv and environment, then runs the server command it was given: fast checks
of what is passed and how. The real Apptainer runs the same paths in
tests/integration/test_apptainer.py."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from pipeline.server.apptainer_backend import ApptainerBackend, find_runtime, image_facts
from pipeline.server.base import PreflightError, ServerSpec
from pipeline.server.preflight import free_port
from pipeline.server.readiness import wait_ready

FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_APPTAINER_LOG"], "w") as fh:
    json.dump({{"argv": args, "env": dict(os.environ)}}, fh)
if args[0] in ("version", "--version"):
    print("apptainer version 1.4.5"); sys.exit(0)
if args[0] == "inspect":  # what Apptainer 1.4 prints for `inspect --json`
    labels = {{"fdb-pipeline.server-package": "moshi-personaplex"}}
    print(json.dumps({{"data": {{"attributes": {{"labels": labels}}}}, "type": "container"}}))
    sys.exit(0)
i = 1
while args[i].startswith("--"):
    i += 2 if args[i] == "--bind" else 1
os.execvp(args[i + 1], args[i + 1:])  # skip the image, run the command
"""


@pytest.fixture
def fake_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "apptainer"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APPTAINER_LOG", str(tmp_path / "call.json"))
    return exe


def test_finds_either_runtime_name(fake_runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_runtime.parent))  # no real apptainer further on
    assert find_runtime() == str(fake_runtime)
    fake_runtime.rename(fake_runtime.with_name("singularity"))
    assert find_runtime().endswith("/singularity")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PreflightError, match="neither apptainer nor singularity"):
        find_runtime()


def test_runs_the_server_as_a_child_with_nv_binds_and_secret_in_env_only(
    fake_runtime: Path, tmp_path: Path
) -> None:
    sif = tmp_path / "server.sif"
    sif.write_bytes(b"SIF")
    port = free_port()
    server = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self): self.send_response(400); self.end_headers()\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    spec = ServerSpec(
        [sys.executable, "-c", server, str(port)],
        port=port,
        gpu="1",
        env={"HF_TOKEN": "hf_supersecrettoken123"},
        mounts={tmp_path: "/cache/huggingface"},
        run_id="rid",
    )
    backend = ApptainerBackend(spec, tmp_path / "logs", sif, str(fake_runtime))
    with backend:
        wait_ready(backend, 20)
        call = json.loads((tmp_path / "call.json").read_text())
        argv = call["argv"]
        assert argv[:2] == ["exec", "--nv"]
        assert argv[2:4] == ["--bind", f"{tmp_path}:/cache/huggingface"]
        assert argv[4] == str(sif)
        assert "hf_supersecrettoken123" not in " ".join(argv)  # never on a command line
        assert call["env"]["HF_TOKEN"] == "hf_supersecrettoken123"
        # the image's %environment drops the host's PYTHONPATH: ours must reach the server as
        # APPTAINERENV_*, which Apptainer applies after it
        assert call["env"]["APPTAINERENV_HF_TOKEN"] == "hf_supersecrettoken123"
        assert call["env"]["CUDA_VISIBLE_DEVICES"] == "1"
        doc = backend.describe()
    assert doc["image_sha256"] and "hf_supersecrettoken123" not in json.dumps(doc)
    assert doc["env"]["HF_TOKEN"] == "***"
    assert backend.proc is None  # stopped


def test_spython_gets_a_singularity_even_when_only_apptainer_exists(
    fake_runtime: Path, tmp_path: Path
) -> None:
    facts = image_facts(str(fake_runtime), tmp_path / "x.sif")
    assert "1.4.5" in str(facts.get("runtime_version")), facts
    assert facts["labels"] == {"fdb-pipeline.server-package": "moshi-personaplex"}, facts


def test_a_custom_voice_reaches_the_server_in_the_image(
    fake_runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.config import BenchSettings
    from pipeline.server.launch import plan_servers

    voice = tmp_path / "voices" / "me.wav"
    voice.parent.mkdir()
    voice.write_bytes(b"RIFF")
    sif = tmp_path / "pp.sif"
    sif.write_bytes(b"SIF")
    settings = BenchSettings(
        root=tmp_path,
        runtime="apptainer",
        sif=sif,
        gpus="none",
        port=0,
        voice_prompt=str(voice),
        hf_cache=tmp_path / "hf",
        server_args=("--moshi-weight=/w.safetensors",),
    ).validate()
    plan = plan_servers(settings, "rid", tmp_path / "run")
    (backend,) = plan.backends
    assert plan.voice_prompt == "me.wav"  # the session names the file only
    argv = backend.argv()  # type: ignore[attr-defined]
    assert argv[argv.index("--voice-prompt-dir") + 1] == "/voices"
    assert f"{voice.parent}:/voices" in argv
    assert f"{(tmp_path / 'hf').resolve()}:/cache/huggingface" in argv
