import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.server.base import RUN_ID_ENV
from pipeline.server.cleanup import find_processes

REPO = Path(__file__).resolve().parents[2]


def cleanup_run(run_id: str) -> subprocess.CompletedProcess[str]:
    """`cleanup --run-id` as a user runs it, with no Docker engine to ask."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "cleanup", "--run-id", run_id],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"},
    )


def test_cleanup_kills_a_crashed_runs_server_and_says_so() -> None:
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, RUN_ID_ENV: "crashed-run-1"},
        start_new_session=True,
    )
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, RUN_ID_ENV: "another-run"},
        start_new_session=True,
    )
    try:
        assert [pid for pid, _ in find_processes("crashed-run-1")] == [orphan.pid]
        out = cleanup_run("crashed-run-1")
        assert out.returncode == 0, out.stderr
        assert f"removed process {orphan.pid} (run crashed-run-1)" in out.stderr
        assert "removed 1 leftover(s)" in out.stderr
        assert orphan.wait(timeout=10) == -9
        assert other.poll() is None  # another run's server is left alone
        time.sleep(0.1)
        again = cleanup_run("crashed-run-1")
        assert "nothing left behind by run crashed-run-1" in again.stderr
    finally:
        for p in (orphan, other):
            p.kill()
            p.wait()
