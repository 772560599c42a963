import json
from pathlib import Path

from pipeline.config import InferSettings
from pipeline.results.records import RunRecords, SampleRecord, git_state, package_versions
from pipeline.run.run import settings_record
from pipeline.secrets import redact
from tests.conftest import ZERO_COUNTS


def test_manifest_lifecycle_and_lines(tmp_path: Path) -> None:
    rec = RunRecords(tmp_path / "run", "rid")
    rec.start(settings_record(InferSettings(root=tmp_path)), {"profile": "moshi"})
    doc = json.loads(rec.manifest_path.read_text())
    assert doc["status"] == "started" and doc["finished_at"] is None
    assert doc["settings"]["root"] == str(tmp_path) and doc["profile"] == "moshi"
    assert doc["packages"]["websockets"] and doc["packages"]["libopus"]
    assert set(doc["git"]) == {"commit", "dirty"}
    rec.add_sample(SampleRecord("t", "1", "t/1/input.wav", status="ok"))
    rec.add_sample(SampleRecord("t", "2", "t/2/input.wav").fail("input", "boom"))
    # lines are on disk before the run finishes (a crash keeps them)
    lines = [json.loads(x) for x in rec.samples_path.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["ok", "failed"]
    assert lines[1]["error_kind"] == "input" and lines[1]["error"] == "boom"
    assert rec.failures[0].key == "t/2"
    rec.finish("failed")
    doc = json.loads(rec.manifest_path.read_text())
    assert doc["status"] == "failed" and doc["finished_at"]
    assert doc["counts"] == {**ZERO_COUNTS, "ok": 1, "failed": 1}


def test_secrets_never_recorded(tmp_path: Path) -> None:
    token = "hf_" + "AbCdEfGhIjKlMnOpQrStUv"
    assert token not in redact(f"HF_TOKEN={token} x")
    rec = RunRecords(tmp_path, "rid")
    rec.start({"note": f"token {token}"}, {"cmd": [token]})
    rec.add_sample(SampleRecord("t", "1", "x").fail("connect", f"bad {token}"))
    rec.finish("failed")
    for path in tmp_path.iterdir():
        assert token not in path.read_text()


def test_provenance_helpers(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    versions = package_versions()
    assert versions["numpy"] and versions["libsndfile"]
