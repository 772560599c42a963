"""`infer` against the REAL upstream moshi server (tiny random weights, CPU), on a synthesized
espeak-ng dataset in the v1.5 layout: both pacings, resume, overwrite, a run killed midway."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.dataset.discovery import discover
from pipeline.dataset.synthesize import SynthSpec, synthesize
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE
from tests.conftest import ZERO_COUNTS
from tests.integration.runs import finish, lines, start, wait_in_session
from tests.real_server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fdb") / "v1.5"
    synthesize(root, SynthSpec(per_task=2, seconds_trailing=0.5))
    return root


def infer(server: RunningServer, root: Path, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return start(
        "infer",
        "--server",
        server.address,
        "--profile",
        "moshi",
        "--root",
        str(root),
        "--run-dir",
        str(run_dir),
        *extra,
    )


def check_outputs(root: Path) -> int:
    """Every sample complete and well-formed; returns the number of text pieces seen."""
    pieces = 0
    for sample in discover(root):
        info_in = sf.info(str(sample.input_path))
        want = round(info_in.frames * SAMPLE_RATE / info_in.samplerate)
        out = sf.info(str(sample.output_path))
        assert (out.samplerate, out.channels, out.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert out.frames == want, sample.key
        doc = json.loads(sample.text_path.read_text())
        assert doc["frames_received"] == doc["frames_sent"] - 1  # moshi: N -> N-1
        assert doc["frames_sent"] == int(np.ceil(want / FRAME_SAMPLES))
        pieces += len(doc["pieces"])
        audio, _ = sf.read(str(sample.output_path), dtype="float32")
        assert np.all(audio[:FRAME_SAMPLES] == 0)
    return pieces


def test_both_pacings_resume_and_overwrite(
    moshi_server: RunningServer, dataset: Path, tmp_path: Path
) -> None:
    n = len(discover(dataset))
    assert n == 8
    code, out = finish(infer(moshi_server, dataset, tmp_path / "unpaced"))
    assert code == 0, out
    assert "ALL SAMPLES COMPLETE" in out
    recs = lines(tmp_path / "unpaced")
    assert [r["status"] for r in recs] == ["ok"] * n
    assert [r["session_index"] for r in recs] == list(range(n))
    assert all(r["frames_received"] == r["frames_expected"] for r in recs)
    assert check_outputs(dataset) > 0, "the real server sent no text at all"
    manifest = json.loads((tmp_path / "unpaced" / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["counts"] == {**ZERO_COUNTS, "ok": n}

    code, out = finish(infer(moshi_server, dataset, tmp_path / "again"))
    assert code == 0, out
    assert [r["status"] for r in lines(tmp_path / "again")] == ["skipped"] * n

    # real-time pacing over one task: no faster than the audio, lag recorded per sample
    code, out = finish(
        infer(
            moshi_server,
            dataset,
            tmp_path / "paced",
            "--pace",
            "realtime",
            "--overwrite",
            "--task",
            "talking_to_other",
        )
    )
    assert code == 0, out
    recs = lines(tmp_path / "paced")
    assert [r["status"] for r in recs] == ["ok", "ok"]
    for r in recs:
        assert r["realtime_factor"] >= 0.95
        # no upper bound in seconds: a loaded CPU may fall behind real time; a frame can never
        # lag by more than the whole stream took
        assert 0 < r["lag"]["p50_s"] <= r["lag"]["p95_s"] <= r["lag"]["max_s"] <= r["stream_s"]
    check_outputs(dataset)


def test_killed_midway_resumes_without_redoing_or_partials(
    moshi_server: RunningServer, dataset: Path, tmp_path: Path
) -> None:
    samples = discover(dataset)
    n = len(samples)
    for sample in samples:  # a fresh start: no sample has outputs
        sample.output_path.unlink(missing_ok=True)
        sample.text_path.unlink(missing_ok=True)
    proc = infer(moshi_server, dataset, tmp_path / "killed", "--pace", "realtime")
    in_flight = wait_in_session(proc, tmp_path / "killed", finished=2)  # inside sample 3
    proc.send_signal(signal.SIGKILL)  # the worst case: no handler runs at all
    proc.wait(timeout=30)
    done = {f"{r['task']}/{r['id']}" for r in lines(tmp_path / "killed") if r["status"] == "ok"}
    assert len(done) == in_flight >= 2
    # the sample in flight (one server: samples run in order) left nothing under the final
    # names: neither the wav nor the marker (a hidden temporary at most)
    killed = samples[in_flight]
    assert not killed.output_path.exists() and not killed.text_path.exists()

    code, out = finish(infer(moshi_server, dataset, tmp_path / "resumed"))
    assert code == 0, out
    by_key = {f"{r['task']}/{r['id']}": r["status"] for r in lines(tmp_path / "resumed")}
    assert len(by_key) == n
    assert {k for k, v in by_key.items() if v == "skipped"} == done  # nothing redone
    assert {v for k, v in by_key.items() if k not in done} == {"ok"}  # the rest, killed included
    assert not list(dataset.rglob("*.partial"))  # leftovers of the kill were removed
    check_outputs(dataset)


def test_sigterm_finalises_the_manifest(
    moshi_server: RunningServer, dataset: Path, tmp_path: Path
) -> None:
    proc = infer(moshi_server, dataset, tmp_path / "term", "--overwrite", "--pace", "realtime")
    deadline = time.monotonic() + 120
    while not lines(tmp_path / "term") and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # what Slurm's scancel sends
    code, out = finish(proc, timeout=60)
    assert code == 128 + signal.SIGTERM, out
    assert "INTERRUPTED by SIGTERM" in out
    manifest = json.loads((tmp_path / "term" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["finished_at"]
    assert manifest["counts"]["ok"] >= 1


def test_the_personaplex_profile_against_upstream_moshi_stops_at_once(
    moshi_server: RunningServer, tmp_path: Path
) -> None:
    """The default profile against the real upstream server: N-1 of N frames. Before: each
    sample waited out the 60 s stall timeout, was retried twice and failed with "raise
    --stall-timeout" (7 min 11 s for 2 samples; ~25 hours for v1.5)."""
    root = tmp_path / "v1.5"
    synthesize(root, SynthSpec(tasks=("user_interruption",), per_task=3, seconds_trailing=0.5))
    t0 = time.monotonic()
    proc = start(
        "infer", "--server", moshi_server.address, "--root", str(root),
        "--run-dir", str(tmp_path / "r"), "--overwrite",
    )  # fmt: skip
    code, out = finish(proc, timeout=120)
    took = time.monotonic() - t0
    recs = lines(tmp_path / "r")
    assert code == 1, out
    assert [r["status"] for r in recs] == ["failed", "not_run", "not_run"]
    assert recs[0]["error_kind"] == "profile_mismatch" and recs[0]["attempts"] == []
    assert recs[0]["frames_received"] == recs[0]["frames_sent"] - 1
    assert "--profile moshi" in out and took < 45
