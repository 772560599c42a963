"""`python -m pipeline slurm ...` on the real one-node Slurm (`make slurm-cluster`), each task
running `bench` with the real tiny moshi server (`--container none`: the host venv, until the
CPU SIF is built by the set-up; the script's SIF line is covered by tests/slurm/test_script.py).

A missing cluster skips here on a workstation and fails in CI.
"""

from __future__ import annotations

import json
import os
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
from tests.conftest import in_ci
from tests.integration.runs import finish, lines, manifest, start, wait_for
from tests.real_server import tiny_bench_args

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


def submit(job: Path, data: Path, model_dir: Path, *extra: str) -> str:
    bench = [a for a in tiny_bench_args(model_dir) if a not in ("--runtime", "local")]
    rc, out = slurm(
        "submit", "--root", str(data), "--run-dir", str(job), "--container", "none",
        "--gpus-per-task", "0", "--cpus-per-task", "1", "--prefix", "both",
        "--encoder", "webclient", "--hf-cache", str(job.parent / "hf"), *bench, *extra,
    )  # fmt: skip
    assert rc == 0, out
    job_id = json.loads((job / "submissions.json").read_text())["submissions"][-1]["job_id"]
    SUBMITTED.append(job_id)
    return str(job_id)


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


def test_an_array_of_three_finishes_and_two_tasks_at_once_share_no_server(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = dataset(tmp_path / "data", ("user_interruption",), per_task=2)
    job = tmp_path / "job"
    job_id = submit(job, data, tiny_model_dir, "--shards", "3")  # the default --port 8998
    wait_gone(job_id)
    rc, doc = report(job)
    keys = [s.key for s in discover(data, prefix="both")]
    assert rc == 0, doc
    assert doc["counts"] == {"ok": len(keys), "failed": 0, "missing": 0}
    assert doc["by_task"] == {
        "user_interruption": {"ok": 2, "failed": 0, "missing": 0},
        "user_interruption (clean_)": {"ok": 2, "failed": 0, "missing": 0},
    }
    merged = [json.loads(x) for x in (job / "samples.jsonl").read_text().splitlines()]
    assert sorted((r["task"], r["id"], r["prefix"]) for r in merged) == sorted(
        (s.task, s.sample_id, s.prefix) for s in discover(data, prefix="both")
    )  # every sample exactly once
    tasks = [job / "array-0" / f"task-{k}" for k in range(3)]
    done = [r for t in tasks for r in lines(t) if r["status"] == "ok"]
    assert len(done) == len(keys) and doc["done_more_than_once"] == []
    # two tasks ran on the one node at the same time, each on its own server from port 8998 up
    spans = overlap(job_id)
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    servers = [manifest(t)["servers"][0] for t in tasks]
    assert len({s["pid"] for s in servers}) == 3
    assert all(s["port"] >= 8998 for s in servers)
    for t, s in zip(tasks, servers, strict=True):  # each task's sessions went to its own server
        assert manifest(t)["server_urls"] == [f"ws://127.0.0.1:{s['port']}/api/chat"]
        assert {r["server"] for r in lines(t)} == {s["name"]}


def leftovers(run_id: str, job: Path) -> list[str]:
    """Processes of a task (its pipeline, its server) that still live: found by the run id in
    their environment or the job folder on their command line."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("FDB_PIPELINE_RUN_ID") == run_id or str(job) in cmd:
            found.append(f"{proc.info['pid']}: {cmd}")
    return found


def listening(port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        for c in psutil.net_connections(kind="tcp")
    )


def assert_clean_stop(task: Path, job: Path, data: Path) -> set[str]:
    """Nothing of the task lives on, no port is held, no output is partial; the keys it wrote."""
    run = manifest(task)
    assert not leftovers(run["run_id"], job)
    assert not listening(int(run["server_urls"][0].rsplit(":", 1)[1].split("/")[0]))
    assert not list(data.rglob("*.partial")), "a partial output was left behind"
    for text in data.rglob("*output_text.json"):  # every output there is complete
        doc = json.loads(text.read_text())
        assert doc["format"] == TEXT_FORMAT
        assert (text.parent / doc["output"]).is_file()
    return {f"{r['task']}/{r['id']}" + (f" ({r['prefix']})" if r["prefix"] else "")
            for r in lines(task) if r["status"] == "ok"}  # fmt: skip


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


def first_record(task: Path) -> None:
    wait_for(lambda: (task / "samples.jsonl").exists() and lines(task), timeout=300)


def test_scancel_leaves_nothing_behind_and_resubmit_completes_exactly_the_rest(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = dataset(tmp_path / "data", ("user_backchannel",), per_task=2)
    job = tmp_path / "job"
    job_id = submit(job, data, tiny_model_dir, "--port", "0")
    task = job / "array-0" / "task-0"
    first_record(task)  # one sample written, the next one under way
    subprocess.run(["scancel", job_id], check=True)
    wait_gone(job_id)
    assert array_states(job_id)[0].state == "CANCELLED"
    assert manifest(task)["status"] == "interrupted"  # it stopped itself, cleanly
    done = assert_clean_stop(task, job, data)
    keys = [s.key for s in discover(data, prefix="both")]
    assert 1 <= len(done) < len(keys)
    resubmit_completes_exactly_the_rest(job, done, keys)


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
        job, data, tiny_model_dir, "--port", "0", "--time", "1", "--term-before", "0",
        "--pace", "realtime",
    )  # fmt: skip
    wait_gone(job_id, timeout=300)
    assert array_states(job_id)[0].state == "TIMEOUT"
    task = job / "array-0" / "task-0"
    done = assert_clean_stop(task, job, data)
    keys = [s.key for s in discover(data, prefix="both")]
    assert len(done) < len(keys)
    # the rest unpaced: resubmit takes the job's settings from slurm.toml, edits included
    toml = job / "slurm.toml"
    toml.write_text(toml.read_text().replace('pace = "realtime"\n', ""))
    resubmit_completes_exactly_the_rest(job, done, keys)
    assert "pace" not in (job / "bench.toml").read_text()
