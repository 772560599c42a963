import socket
from pathlib import Path

import pytest

from pipeline.server.base import PreflightError
from pipeline.server.preflight import (
    BUILTIN_VOICES,
    cached_revision,
    check_voice,
    check_weights,
    choose_ports,
)


def test_builtin_voices_are_the_18_shipped_ones() -> None:
    assert len(BUILTIN_VOICES) == 18
    assert {"NATF0.pt", "NATM3.pt", "VARF4.pt", "VARM0.pt"} <= set(BUILTIN_VOICES)


def test_voice_choices(tmp_path: Path) -> None:
    assert check_voice("NATF2.pt").query_value == "NATF2.pt"
    wav = tmp_path / "me.wav"
    wav.write_bytes(b"RIFF")
    choice = check_voice(str(wav))
    assert (choice.query_value, choice.folder) == ("me.wav", tmp_path)
    with pytest.raises(PreflightError, match=r"unknown voice prompt 'NATF9\.pt'.*NATF0\.pt"):
        check_voice("NATF9.pt")
    with pytest.raises(PreflightError, match=r"existing \.pt or \.wav"):
        check_voice(str(tmp_path / "missing.pt"))


def test_ports_taken_free_and_consecutive() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(PreflightError, match=f"port {taken} is already in use.*--port 0"):
            choose_ports(taken, 1)
    free = choose_ports(0, 3)
    assert len(set(free.ports)) == 3 and all(p > 0 for p in free.ports)
    free.release()


def test_token_needed_only_for_uncached_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-saved-login"))
    repo = "nvidia/personaplex-7b-v1"
    with pytest.raises(PreflightError, match=r"HF_TOKEN is not set.*accept the licence"):
        check_weights(tmp_path, repo, local_weights=False)
    check_weights(tmp_path, repo, local_weights=True)  # weights given as files
    snap = tmp_path / "hub" / "models--nvidia--personaplex-7b-v1"
    (snap / "snapshots" / "abc123").mkdir(parents=True)
    (snap / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"x")
    (snap / "refs").mkdir()
    (snap / "refs" / "main").write_text("abc123")
    check_weights(tmp_path, repo, local_weights=False)  # cached: no token needed
    assert cached_revision(tmp_path, repo) == "abc123"
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    check_weights(tmp_path / "empty", repo, local_weights=False)
