"""The whole `infer` command against the protocol-faithful fake server: happy paths, resume,
every fault ending as a failed sample with a reason while the batch goes on."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.sync.client import connect as sync_connect

from pipeline.cli import main
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE
from tests.conftest import ZERO_COUNTS
from tests.fakes.fake_server import Behaviour, FakeServer, estimate_frame_index

FORMATS = [(16000, 1, "PCM_16"), (48000, 2, "PCM_24"), (24000, 1, "FLOAT"), (44100, 1, "PCM_16")]


def make_dataset(root: Path, n: int, seconds: float = 1.0, task: str = "user_interruption") -> None:
    rng = np.random.default_rng(1)
    for i in range(n):
        rate, channels, subtype = FORMATS[i % len(FORMATS)]
        folder = root / task / str(i)
        folder.mkdir(parents=True)
        x = 0.2 * rng.standard_normal((int(rate * (seconds + 0.013 * i)), channels))
        sf.write(folder / "input.wav", x.astype(np.float32), rate, subtype=subtype)


def run_infer(server: str, root: Path, run_dir: Path, *extra: str) -> int:
    return main(
        [
            "infer",
            "--server",
            server,
            "--root",
            str(root),
            "--run-dir",
            str(run_dir),
            "--retry-backoff",
            "0.01",
            *extra,
        ]
    )


def lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())  # type: ignore[no-any-return]


def expected_len(path: Path) -> int:
    info = sf.info(str(path))
    return round(info.frames * SAMPLE_RATE / info.samplerate)


def test_personaplex_end_to_end_resume_and_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 4)
    with FakeServer(Behaviour(prompt_phase_s=0.3)) as srv:
        assert run_infer(srv.address, root, tmp_path / "r1") == 0
        sessions = list(srv.sessions)
    # the session: prompts sent URL-encoded, never a seed, nothing sent before 0x00
    assert len(sessions) == 4
    for s in sessions:
        assert s.query == {
            "voice_prompt": "NATF2.pt",
            "text_prompt": "You are a helpful and friendly assistant.",
        }
        assert s.discarded_before_handshake == 0 and s.error is None
    for i, rec in enumerate(lines(tmp_path / "r1")):
        folder = root / "user_interruption" / str(i)
        assert rec["status"] == "ok" and rec["session_index"] == i and rec["attempts"] == []
        n = int(np.ceil(expected_len(folder / "input.wav") / FRAME_SAMPLES))
        assert rec["frames_sent"] == rec["frames_received"] == rec["frames_expected"] == n
        out, rate = sf.read(folder / "output.wav", dtype="float32")
        info = sf.info(str(folder / "output.wav"))
        assert (rate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert out.shape[0] == expected_len(folder / "input.wav")  # exactly the input's length
        assert np.all(out[:FRAME_SAMPLES] == 0)  # reference alignment: one silent frame first
        for j in range(n - 1):  # then output frame j, in order (the fake encodes j in pitch)
            seg = out[FRAME_SAMPLES * (j + 1) : FRAME_SAMPLES * (j + 2)]
            if seg.shape[0] == FRAME_SAMPLES:
                assert estimate_frame_index(seg) == j % 64
        doc = json.loads((folder / "output_text.json").read_text())
        assert doc["text"].startswith(" word0 word1")
        # piece k rides with output frame 4k+3 (text_every=4); it may overtake buffered audio
        # but is never placed after its frame
        frames = [p["frame"] for p in doc["pieces"]]
        assert frames == sorted(frames)
        assert all(f <= 4 * k + 3 for k, f in enumerate(frames))
        assert all(p["time_s"] == pytest.approx((p["frame"] + 1) * 0.08) for p in doc["pieces"])
        assert not (folder / "output.json").exists()  # the evaluation's name stays free
    m = manifest(tmp_path / "r1")
    assert m["status"] == "finished" and m["counts"] == {**ZERO_COUNTS, "ok": 4}
    assert m["profile"] == "personaplex" and m["server_urls"][0].endswith("/api/chat")

    with FakeServer(Behaviour()) as srv:
        assert run_infer(srv.address, root, tmp_path / "r2") == 0
        assert srv.sessions == []  # everything complete: skipped without connecting
        assert [r["status"] for r in lines(tmp_path / "r2")] == ["skipped"] * 4
        # a corrupted output is redone, the rest stays skipped
        bad = root / "user_interruption" / "2" / "output.wav"
        bad.write_bytes(bad.read_bytes()[:1000])
        assert run_infer(srv.address, root, tmp_path / "r3") == 0
        assert [r["status"] for r in lines(tmp_path / "r3")] == [
            "skipped",
            "skipped",
            "ok",
            "skipped",
        ]
        assert run_infer(srv.address, root, tmp_path / "r4", "--overwrite") == 0
        assert [r["status"] for r in lines(tmp_path / "r4")] == ["ok"] * 4


def test_moshi_profile_n_minus_one_and_per_task_prompt(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 2)
    with FakeServer(Behaviour(profile="moshi")) as srv:
        assert run_infer(srv.address, root, tmp_path / "r", "--profile", "moshi") == 0
        assert all(s.query == {} for s in srv.sessions)
    for rec in lines(tmp_path / "r"):
        assert rec["frames_received"] == rec["frames_sent"] - 1 == rec["frames_expected"]
        doc = json.loads((root / "user_interruption" / rec["id"] / "output_text.json").read_text())
        # moshi sends text inline after its frame's audio: exact frame of every piece
        assert [p["frame"] for p in doc["pieces"]] == [4 * k + 3 for k in range(len(doc["pieces"]))]
    with FakeServer(Behaviour()) as srv:
        code = run_infer(
            srv.address,
            root,
            tmp_path / "r2",
            "--overwrite",
            "--voice",
            "VARM3.pt",
            "--task-text-prompt",
            "user_interruption=You are a wise teacher.",
        )
        assert code == 0
        assert srv.sessions[0].query == {
            "voice_prompt": "VARM3.pt",
            "text_prompt": "You are a wise teacher.",
        }


def test_every_fault_fails_its_sample_with_a_reason_and_the_batch_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 5, seconds=1.5)
    faults = {
        0: Behaviour(close_after_frames=3),
        1: Behaviour(stall_after_frames=2),
        2: Behaviour(garbage_after_frames=2),
        3: Behaviour(never_handshake=True),
    }
    with FakeServer(lambda i: faults.get(i, Behaviour())) as srv:
        code = run_infer(
            srv.address,
            root,
            tmp_path / "r",
            "--sample-retries",
            "0",
            "--stall-timeout",
            "1",
            "--handshake-timeout",
            "1",
        )
    assert code == 1
    recs = lines(tmp_path / "r")
    kinds = [r["error_kind"] for r in recs]
    assert kinds == ["server_closed", "stall", "protocol", "handshake_timeout", None]
    assert "after 3/" in recs[0]["error"] and "1006" in recs[0]["error"]
    assert "no message from the server for 1 s" in recs[1]["error"]
    assert "invalid Ogg" in recs[2]["error"]
    assert "no handshake within 1 s" in recs[3]["error"]
    assert recs[4]["status"] == "ok"
    for i in range(4):  # a failed sample leaves nothing that looks finished
        folder = root / "user_interruption" / str(i)
        assert not (folder / "output.wav").exists() and not (folder / "output_text.json").exists()
    m = manifest(tmp_path / "r")
    assert m["status"] == "failed" and m["counts"] == {**ZERO_COUNTS, "ok": 1, "failed": 4}


def test_mid_sample_failure_is_retried_as_a_new_session(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1)
    with FakeServer(lambda i: Behaviour(close_after_frames=2) if i == 0 else Behaviour()) as srv:
        assert run_infer(srv.address, root, tmp_path / "r", "--sample-retries", "1") == 0
        assert len(srv.sessions) == 2
    (rec,) = lines(tmp_path / "r")
    assert rec["status"] == "ok" and rec["session_index"] == 1
    assert [(a["stage"], a["error_kind"]) for a in rec["attempts"]] == [
        ("session", "server_closed")
    ]


def test_server_crash_before_handshake_is_retried_then_reported(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1)
    with FakeServer(Behaviour()) as srv:
        code = run_infer(
            srv.address, root, tmp_path / "r", "--voice-prompt", "NOPE.pt", "--connect-retries", "2"
        )
        assert len(srv.sessions) == 3 and "FileNotFoundError" in str(srv.sessions[0].error)
    (rec,) = lines(tmp_path / "r")
    assert code == 1 and rec["error_kind"] == "connect"
    assert "closed the connection before the handshake" in rec["error"]
    assert [a["stage"] for a in rec["attempts"]] == ["connect", "connect"]


def test_nothing_at_the_address_is_a_preflight_error_not_a_batch_of_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: every sample retried its connection for ~31 s and failed (4 hours for 499)."""
    root = tmp_path / "data"
    make_dataset(root, 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = run_infer(f"127.0.0.1:{port}", root, tmp_path / "r", "--connect-retries", "3")
    assert code == 2
    assert f"nothing answers at 127.0.0.1:{port}" in caplog.text and "--server" in caplog.text
    assert not (tmp_path / "r" / "samples.jsonl").exists()  # no sample was tried


def test_a_server_that_is_not_a_chat_server_is_a_preflight_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import http.server

    root = tmp_path / "data"
    make_dataset(root, 1)

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), NotFound) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        address = f"127.0.0.1:{other.server_address[1]}"
        code = run_infer(address, root, tmp_path / "r")
        other.shutdown()
    assert code == 2
    assert f"{address} answers HTTP 404 on /api/chat, not like a moshi" in caplog.text


def test_queued_behind_another_client_with_unanswered_pings(tmp_path: Path) -> None:
    """Another client holds the server for 3 s; we wait without dropping ourselves."""
    root = tmp_path / "data"
    make_dataset(root, 1)
    with FakeServer(Behaviour(profile="moshi")) as srv:
        with sync_connect(srv.chat_url, ping_interval=None) as holder:
            assert holder.recv(timeout=5) == b"\x00"
            threading.Timer(3.0, holder.close).start()
            t0 = time.monotonic()
            assert (
                run_infer(
                    srv.address,
                    root,
                    tmp_path / "r",
                    "--profile",
                    "moshi",
                    "--handshake-timeout",
                    "20",
                )
                == 0
            )
            assert time.monotonic() - t0 >= 2.5
        assert srv.sessions[1].lock_wait_s is not None and srv.sessions[1].lock_wait_s >= 2.5


def test_bad_inputs_fail_their_sample_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1, task="background_speech")
    task = root / "background_speech"
    (task / "10").mkdir()  # no input.wav
    (task / "11").mkdir()
    (task / "11" / "input.wav").write_bytes(b"RIFF....garbage")
    (task / "12").mkdir()
    sf.write(task / "12" / "input.wav", np.zeros(0, np.float32), 16000)
    with FakeServer(Behaviour()) as srv:
        assert run_infer(srv.address, root, tmp_path / "r") == 1
        assert len(srv.sessions) == 1
    recs = {r["id"]: r for r in lines(tmp_path / "r")}
    assert recs["0"]["status"] == "ok"
    assert "10/input.wav is missing" in recs["10"]["error"]
    assert "11/input.wav is not readable audio" in recs["11"]["error"]
    assert "holds no audio" in recs["12"]["error"]
    assert {recs[k]["error_kind"] for k in ("10", "11", "12")} == {"input"}


def test_realtime_pacing_records_lag(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1, seconds=1.2)
    with FakeServer(Behaviour(frame_delay_s=0.01)) as srv:
        t0 = time.monotonic()
        assert run_infer(srv.address, root, tmp_path / "r", "--pace", "realtime") == 0
        wall = time.monotonic() - t0
    (rec,) = lines(tmp_path / "r")
    assert wall >= 1.1  # paced: no faster than the audio
    lag = rec["lag"]
    assert lag is not None and 0.005 < lag["p50_s"] <= lag["p95_s"] <= lag["max_s"] < 2.0
    assert 0.9 < rec["realtime_factor"] < 2.0


def test_unpaced_records_no_lag(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1, seconds=4.0)
    with FakeServer(Behaviour()) as srv:
        assert run_infer(srv.address, root, tmp_path / "r") == 0
    (rec,) = lines(tmp_path / "r")
    # unpaced: no lag is measured; how much faster than real time is the benchmark's business
    # (scripts/bench_client.py), not a unit test's
    assert rec["lag"] is None and rec["realtime_factor"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--root", "/nonexistent/fdb"], "does not exist"),
        (["--task", "bogus"], "unknown task 'bogus'"),
        (["--text-prompt", ""], "empty"),
        (["--server", "ftp://x"], "not supported"),
    ],
)
def test_clear_errors_before_anything_runs(
    tmp_path: Path, argv: list[str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1)
    base = ["infer", "--root", str(root), "--run-dir", str(tmp_path / "r")]
    assert main([*base, *argv]) == 2
    assert message in caplog.text
    assert not (tmp_path / "r").exists()


def test_a_failed_redo_never_leaves_a_stale_output_to_be_scored(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 1)
    folder = root / "user_interruption" / "0"
    (folder / "output.wav").write_bytes(b"RIFF from a reference client, cut short")
    with FakeServer(Behaviour(close_after_frames=1)) as srv:
        assert run_infer(srv.address, root, tmp_path / "r", "--sample-retries", "0") == 1
    assert not (folder / "output.wav").exists()
    assert (folder / "output.wav.stale").read_bytes().startswith(b"RIFF from a reference")


async def test_samples_of_a_dead_server_go_to_a_live_one(tmp_path: Path) -> None:
    """Server B dies after A ran its own list: B's samples go to A, in plan order, after A's."""
    from pipeline.config import InferSettings
    from pipeline.dataset.discovery import Sample, discover
    from pipeline.results.records import RunRecords, SampleRecord
    from pipeline.run.batch import run_batch
    from pipeline.run.plan import assign
    from pipeline.run.sample import SampleRunner
    from pipeline.run.slots import ServerGone, ServerSlot

    root = tmp_path / "data"
    make_dataset(root, 4)
    records = RunRecords(tmp_path / "r", "rid")
    records.start({}, {})
    runner = SampleRunner(InferSettings(root=root), records)
    samples = discover(root)
    plan = assign(samples, 2)
    assert [len(lane) for lane in plan] == [2, 2]
    a_done_with_its_own = asyncio.Event()
    ran_on_a: list[str] = []
    a_was_idle_when_b_died: list[bool] = []

    async def fake_run(sample: Sample, slot: ServerSlot) -> SampleRecord:
        if slot.name == "B":
            await a_done_with_its_own.wait()
            a_was_idle_when_b_died.append(len(ran_on_a) == 2)
            raise ServerGone("B died")
        ran_on_a.append(sample.key)
        if len(ran_on_a) == 2:
            a_done_with_its_own.set()
        await asyncio.sleep(0)
        rec = SampleRecord.of(sample, slot.name)
        rec.status = "ok"
        return rec

    runner.run = fake_run  # type: ignore[method-assign]
    got: list[SampleRecord] = []
    slots = [ServerSlot("ws://a", "A"), ServerSlot("ws://b", "B")]
    stopped = await run_batch(plan, slots, runner, got.append)
    assert a_was_idle_when_b_died == [True]  # the path under test: A waited, then took B's
    assert stopped is None and [r.status for r in got] == ["ok"] * 4
    assert ran_on_a == [s.key for s in plan[0] + plan[1]]


def test_new_settings_redo_the_samples_and_set_the_old_outputs_aside(tmp_path: Path) -> None:
    """Before: a re-run with another prompt skipped every sample ("ALL SAMPLES COMPLETE") and
    the outputs still came from the old settings."""
    root = tmp_path / "data"
    make_dataset(root, 2)
    folder = root / "user_interruption" / "0"
    with FakeServer(Behaviour()) as srv:
        assert run_infer(srv.address, root, tmp_path / "r1") == 0
        first = (folder / "output.wav").read_bytes()
        assert run_infer(srv.address, root, tmp_path / "r2", "--text-prompt", "Be brief.") == 0
        assert len(srv.sessions) == 4  # every sample redone, none skipped
        assert {s.query["text_prompt"] for s in srv.sessions[2:]} == {"Be brief."}
    m = manifest(tmp_path / "r2")
    assert m["counts"] == {**ZERO_COUNTS, "ok": 2, "redone: settings changed": 2}
    assert [r["note"] for r in lines(tmp_path / "r2")] == ["redone: settings changed"] * 2
    (kept,) = folder.glob("output.wav.prev-*")  # set aside, never deleted
    assert kept.read_bytes() == first
    doc = json.loads((folder / "output_text.json").read_text())
    assert doc["settings"]["text_prompt"] == "Be brief." and doc["settings_sha256"]
    assert m["output_settings"]["profile"] == "personaplex"

    with FakeServer(Behaviour()) as srv:  # the same settings again: complete, skipped
        assert run_infer(srv.address, root, tmp_path / "r3", "--text-prompt", "Be brief.") == 0
        # other settings, kept only on request: skipped, counted loudly, nothing redone
        code = run_infer(srv.address, root, tmp_path / "r4", "--keep-other-settings")
        assert code == 0 and srv.sessions == []
    assert manifest(tmp_path / "r3")["counts"] == {**ZERO_COUNTS, "skipped": 2}
    assert manifest(tmp_path / "r4")["counts"] == {
        **ZERO_COUNTS, "skipped": 2, "kept: other settings": 2,
    }  # fmt: skip


def test_the_breaker_stops_an_infer_run_whose_samples_all_fail_the_same_way(
    tmp_path: Path,
) -> None:
    """Before: every sample waited out its stall timeout and retries, one after the other."""
    root = tmp_path / "data"
    make_dataset(root, 6)
    with FakeServer(Behaviour(stall_after_frames=1)) as srv:
        code = run_infer(
            srv.address, root, tmp_path / "r", "--stall-timeout", "0.3", "--sample-retries", "0"
        )
        assert len(srv.sessions) == 3  # the breaker's default: three in a row, then no more
    assert code == 1
    recs = lines(tmp_path / "r")
    assert [r["status"] for r in recs] == ["failed"] * 3 + ["not_run"] * 3
    assert "3 samples in a row failed on server0 with stall" in recs[3]["error"]
    m = manifest(tmp_path / "r")
    assert m["status"] == "failed" and "--breaker" in m["error"]
    assert m["counts"] == {**ZERO_COUNTS, "failed": 3, "not_run": 3}


def test_a_profile_mismatch_stops_the_run_at_once_and_is_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default profile against an upstream moshi server: N-1 of N frames. Before: a 60 s
    stall, two retries, "raise --stall-timeout", for every sample."""
    from pipeline.stream import session

    monkeypatch.setattr(session, "PROFILE_WAIT_S", 0.5)
    root = tmp_path / "data"
    make_dataset(root, 3)
    t0 = time.monotonic()
    with FakeServer(Behaviour(profile="moshi")) as srv:
        code = run_infer(srv.address, root, tmp_path / "r")
        assert len(srv.sessions) == 1  # never retried, never the next sample
    assert code == 1 and time.monotonic() - t0 < 30
    recs = lines(tmp_path / "r")
    assert [r["status"] for r in recs] == ["failed", "not_run", "not_run"]
    assert recs[0]["error_kind"] == "profile_mismatch" and recs[0]["attempts"] == []
    assert "--profile moshi" in recs[0]["error"] and "--stall-timeout" not in recs[0]["error"]
    assert "--profile moshi" in manifest(tmp_path / "r")["error"]


def test_a_sample_held_by_another_live_run_is_left_to_it(tmp_path: Path) -> None:
    """Before: a second run on the same samples deleted the first run's temporary files."""
    from pipeline.dataset.discovery import discover
    from pipeline.results.locks import SampleLock

    root = tmp_path / "data"
    make_dataset(root, 3)
    busy = discover(root)[1]
    theirs = busy.folder / f".{busy.output_path.name}.other-run.partial"
    theirs.write_bytes(b"the other run's output, half written")
    with SampleLock(busy) as held, FakeServer(Behaviour()) as srv:
        assert held
        code = run_infer(srv.address, root, tmp_path / "r")
        assert len(srv.sessions) == 2
    assert code == 1  # not everything is complete
    assert theirs.exists() and not busy.output_path.exists()  # untouched
    assert [r["status"] for r in lines(tmp_path / "r")] == ["ok", "held", "ok"]
    assert manifest(tmp_path / "r")["counts"] == {**ZERO_COUNTS, "ok": 2, "held": 1}
    with FakeServer(Behaviour()) as srv:  # released: the next run does it
        assert run_infer(srv.address, root, tmp_path / "r2") == 0
    assert not theirs.exists() and busy.output_path.exists()


def test_a_reused_run_dir_keeps_every_manifest_and_lines_name_their_run(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root, 2)
    run_dir = tmp_path / "r"
    with FakeServer(Behaviour()) as srv:
        assert run_infer(srv.address, root, run_dir) == 0
        first = manifest(run_dir)["run_id"]
        assert run_infer(srv.address, root, run_dir, "--overwrite") == 0
    second = manifest(run_dir)["run_id"]
    assert second != first
    assert json.loads((run_dir / f"manifest.{first}.json").read_text())["run_id"] == first
    assert [r["run_id"] for r in lines(run_dir)] == [first, first, second, second]


def test_prefix_both_runs_both_passes_in_one_run(tmp_path: Path) -> None:
    """v1.5 scores output.wav against clean_output.wav: one run makes both; a sample without
    its clean input fails that pass only."""
    root = tmp_path / "data"
    make_dataset(root, 3)
    for i in (0, 1):
        folder = root / "user_interruption" / str(i)
        data, rate = sf.read(folder / "input.wav")
        sf.write(folder / "clean_input.wav", data * 0.5, rate)
    with FakeServer(Behaviour()) as srv:
        code = run_infer(srv.address, root, tmp_path / "r", "--prefix", "both")
        assert len(srv.sessions) == 5  # one server, one run, both passes
    assert code == 1
    recs = {(r["id"], r["prefix"]): r for r in lines(tmp_path / "r")}
    assert len(recs) == 6
    assert recs[("2", "clean_")]["status"] == "failed"
    assert "clean_input.wav" in recs[("2", "clean_")]["error"]
    assert all(r["status"] == "ok" for k, r in recs.items() if k != ("2", "clean_"))
    for i in (0, 1):
        folder = root / "user_interruption" / str(i)
        assert (folder / "output.wav").is_file() and (folder / "clean_output.wav").is_file()
    m = manifest(tmp_path / "r")
    assert m["dataset"]["prefix"] == "both" and m["counts"]["ok"] == 5
