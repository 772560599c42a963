"""`python -m pipeline slurm ...` on the real one-node Slurm (`make slurm-cluster`).

The happy paths run what users run: each task execs `apptainer run` of the real CPU SIF
(tests/apptainer_support.ensure_cpu_sif: NVIDIA's PersonaPlex server with tiny random weights,
built once per run and shared with test_apptainer.py), the server a child inside the image:
the array of 3 (`make demo RUNTIME=slurm`), two tasks on the one node with the same default
port, scancel, a SIGTERM to the batch step alone (--signal=B:TERM@S), and a requeue.
The time-limit test alone runs its task on the host venv (`--container none`, the tiny upstream
moshi server): its dataset must outlast a 1-minute limit (6 inputs of ~17 s), and its resubmit
then serves the rest, which the tiny PersonaPlex server in the image would take several times
longer to do (measured on a loaded 2-core machine: ~0.08x real time, against ~0.16x for tiny
moshi); the image's start-up and signal path are covered by the scancel and requeue tests.

A missing cluster skips here on a workstation and fails in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import soundfile as sf

from pipeline.dataset.discovery import discover
from pipeline.dataset.synthesize import SynthSpec, synthesize
from pipeline.results.outputs import TEXT_FORMAT
from pipeline.slurm.queue import ACTIVE, array_states
from tests.apptainer_support import ensure_cpu_sif
from tests.conftest import in_ci
from tests.integration.runs import finish, lines, manifest, start, wait_for
from tests.real_server import REPO_ROOT, tiny_bench_args

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
CLUSTER_CONF = Path("/var/lib/fdb-slurm/slurm.conf")  # scripts/slurm-cluster.sh's default
SETUP = "make slurm-cluster (scripts/slurm-cluster.sh start)"
SUBMITTED: list[str] = []  # job ids a failed test must not leave in the queue


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """The local cluster answers (SLURM_CONF set for this process and the tasks)."""
    if "SLURM_CONF" not in os.environ and CLUSTER_CONF.is_file():
        os.environ["SLURM_CONF"] = str(CLUSTER_CONF)
    problem = None
    if shutil.which("sbatch") is None:
        problem = f"no sbatch on PATH: install and start the local Slurm with `{SETUP}`"
    else:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not done.stdout.strip():
            problem = f"the local Slurm does not answer ({done.stderr.strip()}); run `{SETUP}`"
    if problem is not None:
        if in_ci():
            pytest.fail(problem + " (CI must not skip the integration tests)")
        pytest.skip(problem)
    yield
    for job_id in SUBMITTED:
        subprocess.run(["scancel", job_id], check=False)


def slurm(*args: str) -> tuple[int, str]:
    return finish(start("slurm", *args), timeout=120)


def submit(job: Path, data: Path, *options: str) -> str:
    """`slurm submit` of 1-CPU tasks over both passes of ``data``; the job id."""
    rc, out = slurm(
        "submit", "--root", str(data), "--run-dir", str(job), "--gpus-per-task", "0",
        "--cpus-per-task", "1", "--prefix", "both", "--encoder", "webclient",
        "--hf-cache", str(job.parent / "hf"), *options,
    )  # fmt: skip
    assert rc == 0, out
    job_id = json.loads((job / "submissions.json").read_text())["submissions"][-1]["job_id"]
    SUBMITTED.append(job_id)
    return str(job_id)


@pytest.fixture(scope="module")
def sif() -> Path:
    return ensure_cpu_sif("personaplex")


@pytest.fixture
def in_sif(sif: Path, personaplex_model_dir: Path) -> list[str]:
    """`slurm submit` options: each task `apptainer run` of the CPU SIF, the tiny PersonaPlex
    model bound at its own path."""
    model = personaplex_model_dir.resolve()
    return [
        "--container", "apptainer", "--sif", str(sif), "--profile", "personaplex",
        "--mount", f"{model}:{model}",
        "--server-command", f"python /opt/tiny_personaplex/serve.py --tiny-model {model}",
        "--server-arg=--device=cpu", f"--server-arg=--moshi-weight={model / 'model.safetensors'}",
        "--startup-timeout", "120",
    ]  # fmt: skip


def on_host(model_dir: Path) -> list[str]:
    """`slurm submit` options: each task this Python, the tiny moshi server from its venv."""
    bench = [a for a in tiny_bench_args(model_dir) if a not in ("--runtime", "local")]
    return ["--container", "none", *bench]


def wait_gone(job_id: str, timeout: float = 600) -> None:
    """Until Slurm lists no task of the array as pending or running."""

    def done() -> bool:
        states = array_states(job_id)
        return bool(states) and all(s.state not in ACTIVE for s in states.values())

    wait_for(done, timeout)


def report(job: Path) -> tuple[int, dict[str, Any]]:
    rc, _ = slurm("report", str(job))
    doc: dict[str, Any] = json.loads((job / "manifest.json").read_text())
    return rc, doc


def dataset(
    root: Path, tasks: tuple[str, ...], per_task: int, trailing: float = 0.3, silence: bool = True
) -> Path:
    spec = SynthSpec(
        tasks=tasks, per_task=per_task, seconds_trailing=trailing, include_silence=silence
    )
    synthesize(root, spec)
    return root


def overlap(job_id: str) -> list[tuple[float, float]]:
    """Each task's (start, end) as Slurm recorded them, in seconds since the epoch."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    spans = []
    for line in out.splitlines():
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        span = [
            time.mktime(time.strptime(fields[k], "%Y-%m-%dT%H:%M:%S"))
            for k in ("StartTime", "EndTime")
        ]
        spans.append((span[0], span[1]))
    return spans


def make_demo(demo: Path, args: str, eval_args: str) -> subprocess.CompletedProcess[str]:
    """`make demo RUNTIME=slurm` as a user runs it (not as a sub-make of `make test`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    try:
        return subprocess.run(
            ["make", "demo", "RUNTIME=slurm", f"DEMO_DIR={demo}", f"ARGS={args}",
             f"EVAL_ARGS={eval_args}"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=840, check=False,
        )  # fmt: skip
    finally:
        for ledger in demo.glob("slurm-*/submissions.json"):
            subs = json.loads(ledger.read_text())["submissions"]
            SUBMITTED.extend(str(s["job_id"]) for s in subs)


def test_make_demo_runtime_slurm_runs_an_array_of_three_in_the_sif_each_sample_once(
    tmp_path: Path, sif: Path
) -> None:
    # the demo's two first task folders (a silent and a spoken sample) over both passes: 4
    # samples in 3 tasks, two at once on the one node, each from the default port 8998 up
    tasks = ("user_interruption", "user_backchannel")
    demo = tmp_path / "demo"
    only = f"--task {tasks[0]} --task {tasks[1]}"
    done = make_demo(demo, f"{only} --encoder webclient", only)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "every task has ended" in done.stderr  # it waited for the job, then reported
    assert re.search(r"^all +4 +0 +0$", done.stdout, re.MULTILINE), done.stdout
    (job,) = demo.glob("slurm-*")
    (sub,) = json.loads((job / "submissions.json").read_text())["submissions"]
    assert sub["shards"] == 3 and "apptainer" in (job / "array-0.sbatch").read_text()
    rc, doc = report(job)
    keys = [s.key for s in discover(demo / "data", prefix="both") if s.task in tasks]
    assert rc == 0, doc
    assert doc["counts"] == {"ok": len(keys), "failed": 0, "missing": 0}
    assert doc["by_task"] == {
        f"{t}{p}": {"ok": 1, "failed": 0, "missing": 0}
        for t in sorted(tasks) for p in ("", " (clean_)")
    }  # fmt: skip
    merged = [json.loads(x) for x in (job / "samples.jsonl").read_text().splitlines()]
    assert sorted(key(r) for r in merged) == sorted(keys)  # every sample exactly once
    parts = [job / "array-0" / f"task-{k}" for k in range(3)]
    written = [r for t in parts for r in lines(t) if r["status"] == "ok"]
    assert len(written) == len(keys) and doc["done_more_than_once"] == []
    # two tasks ran on the one node at the same time, each on its own server from port 8998 up
    spans = overlap(sub["job_id"])
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    servers = [manifest(t)["servers"][0] for t in parts]
    assert len({s["pid"] for s in servers}) == 3
    assert all(s["port"] >= 8998 for s in servers)
    for t, s in zip(parts, servers, strict=True):  # each task's sessions went to its own server
        assert manifest(t)["server_urls"] == [f"ws://127.0.0.1:{s['port']}/api/chat"]
        assert {r["server"] for r in lines(t)} == {s["name"]}
        assert s["command"][:2] == ["python", "/opt/tiny_personaplex/serve.py"]  # the image's
    # then the demo's scores: the tiny ASR on all four wavs of each sample, the timing, stats
    assert "judge skipped: needs" in done.stdout + done.stderr
    assert set(json.loads((demo / "eval" / "scores.json").read_text())) == set(tasks)
    evaluated = [
        json.loads(x) for x in (demo / "eval" / "eval-samples.jsonl").read_text().splitlines()
    ]
    assert [r["status"] for r in evaluated if r["stage"] == "asr"] == ["done"] * len(keys)
    for name in ("input", "clean_input", "output", "clean_output"):
        assert (demo / "data" / tasks[1] / "0" / f"{name}.json").is_file()


def leftovers(run_id: str, job: Path, job_id: str) -> list[str]:
    """Processes of a task that still live: its pipeline and server (the run id in their
    environment), Apptainer's own (the job folder among their binds), or anything else the
    task started (Slurm's job id in the environment it passed on)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ours = job_id in (env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_JOB_ID"))
        if ours or env.get("FDB_PIPELINE_RUN_ID") == run_id or str(job) in cmd:
            found.append(f"{proc.info['pid']}: {cmd}")
    return found


def listening(port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        for c in psutil.net_connections(kind="tcp")
    )


def assert_clean_stop(task: Path, job: Path, data: Path, job_id: str) -> set[str]:
    """Nothing of the task lives on, no port is held, no output is partial; the keys it wrote."""
    run = manifest(task)
    assert not leftovers(run["run_id"], job, job_id)
    assert not listening(int(run["server_urls"][0].rsplit(":", 1)[1].split("/")[0]))
    assert not list(data.rglob("*.partial")), "a partial output was left behind"
    for text in data.rglob("*output_text.json"):  # every output there is complete
        doc = json.loads(text.read_text())
        assert doc["format"] == TEXT_FORMAT
        assert (text.parent / doc["output"]).is_file()
    return {key(r) for r in lines(task) if r["status"] == "ok"}


def key(record: dict[str, Any]) -> str:
    return f"{record['task']}/{record['id']}" + (
        f" ({record['prefix']})" if record["prefix"] else ""
    )


def resubmit_completes_exactly_the_rest(job: Path, done: set[str], keys: list[str]) -> None:
    rc, out = slurm("resubmit", str(job), "--shards", "2", "--time", "0")
    assert rc == 0, out
    subs = json.loads((job / "submissions.json").read_text())["submissions"]
    SUBMITTED.append(subs[-1]["job_id"])
    rest = [k for k in (job / f"array-{len(subs) - 1}.samples").read_text().splitlines()]
    assert [k for k in rest if not k.startswith("#")] == [k for k in keys if k not in done]
    wait_gone(subs[-1]["job_id"])
    rc, doc = report(job)
    assert rc == 0, doc
    assert doc["counts"] == {"ok": len(keys), "failed": 0, "missing": 0}
    assert doc["done_more_than_once"] == []  # nothing written twice: exactly the rest ran


def two_short_sessions(root: Path) -> Path:
    """One 2-second sample (silence), both passes. Paced in real time, each session lasts at
    least 2 s however fast the machine, so a signal sent as the first record appears lands
    in the second session; the tiny PersonaPlex server is slow on CPU, so no more than that."""
    return dataset(root, ("user_backchannel",), per_task=1)


def first_record(task: Path) -> None:
    wait_for(lambda: (task / "samples.jsonl").exists() and lines(task), timeout=300)


def one_task_under_way(tmp_path: Path, in_sif: list[str]) -> tuple[Path, Path, str, Path]:
    """A job of one task in the SIF over two short sessions, paced in real time, once its first
    sample is written and the second under way: (dataset, job folder, job id, task folder)."""
    data = two_short_sessions(tmp_path / "data")
    job = tmp_path / "job"
    job_id = submit(job, data, *in_sif, "--port", "0", "--pace", "realtime")
    task = job / "array-0" / "task-0"
    first_record(task)
    return data, job, job_id, task


def test_scancel_in_the_sif_leaves_nothing_behind_and_resubmit_completes_exactly_the_rest(
    tmp_path: Path, in_sif: list[str]
) -> None:
    data, job, job_id, task = one_task_under_way(tmp_path, in_sif)
    subprocess.run(["scancel", job_id], check=True)
    wait_gone(job_id)
    assert array_states(job_id)[0].state == "CANCELLED"
    assert manifest(task)["status"] == "interrupted"  # it stopped itself, cleanly
    done = assert_clean_stop(task, job, data, job_id)
    keys = [s.key for s in discover(data, prefix="both")]
    assert 1 <= len(done) < len(keys)
    resubmit_completes_exactly_the_rest(job, done, keys)


def test_a_sigterm_to_the_batch_step_alone_passes_through_apptainer_to_the_bench(
    tmp_path: Path, in_sif: list[str]
) -> None:
    # --signal=B:TERM@S (--term-before) signals only the batch step's own process: after the
    # script's exec, Apptainer's starter, which must pass it on to the bench inside the image
    data, job, job_id, task = one_task_under_way(tmp_path, in_sif)
    subprocess.run(["scancel", "--batch", "--signal=TERM", f"{job_id}_0"], check=True)
    wait_gone(job_id)
    state = array_states(job_id)[0]
    assert (state.state, state.reason) == ("FAILED", "exit 143:0")  # the bench's SIGTERM exit
    assert manifest(task)["status"] == "interrupted"  # not finished: the signal got through
    assert len(assert_clean_stop(task, job, data, job_id)) == 1


def test_a_requeued_task_in_the_sif_stops_cleanly_and_resumes_from_its_ledger(
    tmp_path: Path, in_sif: list[str]
) -> None:
    # preemption with requeue as `scontrol requeue` does it: Slurm's SIGTERM to the task (its
    # SIGKILL KillWait later), the task back in the queue, then again with SLURM_RESTART_COUNT=1
    # on its same shard and ledger folder
    data, job, job_id, task = one_task_under_way(tmp_path, in_sif)
    keys = [s.key for s in discover(data, prefix="both")]
    subprocess.run(["scontrol", "requeue", f"{job_id}_0"], check=True)
    # Slurm holds a requeued task back for 2 minutes (its BeginTime): the first run's end is
    # checked in that window, then the task is let go at once
    wait_for(lambda: array_states(job_id)[0].state == "PENDING", timeout=120)
    first = manifest(task)
    assert first["status"] == "interrupted"  # it stopped itself, cleanly
    done = assert_clean_stop(task, job, data, job_id)
    assert 1 <= len(done) < len(keys)
    subprocess.run(["scontrol", "update", f"JobId={job_id}_0", "StartTime=now"], check=True)
    wait_gone(job_id)
    assert array_states(job_id)[0].state == "COMPLETED"
    log = (job / "logs" / "array-0" / f"task-0.{job_id}.out").read_text()
    assert "restart 0" in log and "restart 1" in log, log  # one log, appended
    second = manifest(task)
    assert second["run_id"] != first["run_id"] and second["status"] == "finished"
    again = [r for r in lines(task) if r["run_id"] == second["run_id"]]
    # resumed from the ledger: what the first run wrote is found complete, the rest written
    assert {key(r) for r in again if r["status"] == "skipped"} == done
    assert {key(r) for r in again if r["status"] == "ok"} == set(keys) - done
    assert len(again) == len(keys)
    rc, doc = report(job)
    assert rc == 0, doc
    assert doc["counts"] == {"ok": len(keys), "failed": 0, "missing": 0}
    assert doc["done_more_than_once"] == []  # each sample written once


def test_a_task_stopped_by_its_time_limit_resumes_on_resubmit(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # paced in real time, 6 spoken inputs of ~20 s (no 2 s silent one): the task cannot finish
    # within its 1 minute, even with Slurm acting on the limit up to ~30 s late and KillWait's
    # 10 s after that, whatever the machine's speed
    data = dataset(tmp_path / "data", ("talking_to_other",), per_task=3, trailing=15, silence=False)
    audio_s = sum(sf.info(str(s.input_path)).duration for s in discover(data, prefix="both"))
    assert audio_s > 60 + 30 + 10 + 15, audio_s  # the premise of this test
    job = tmp_path / "job"
    job_id = submit(
        job, data, *on_host(tiny_model_dir), "--port", "0", "--time", "1", "--term-before", "0",
        "--pace", "realtime",
    )  # fmt: skip
    wait_gone(job_id, timeout=300)
    assert array_states(job_id)[0].state == "TIMEOUT"
    task = job / "array-0" / "task-0"
    done = assert_clean_stop(task, job, data, job_id)
    keys = [s.key for s in discover(data, prefix="both")]
    assert len(done) < len(keys)
    # the rest unpaced: resubmit takes the job's settings from slurm.toml, edits included
    toml = job / "slurm.toml"
    toml.write_text(toml.read_text().replace('pace = "realtime"\n', ""))
    resubmit_completes_exactly_the_rest(job, done, keys)
    assert "pace" not in (job / "bench.toml").read_text()
