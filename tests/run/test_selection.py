"""Which samples a run takes: shards (deterministic, complete, disjoint), a samples file, and
an output root for a read-only dataset - through `infer` against the fake server too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.config import ConfigError, InferSettings
from pipeline.dataset.discovery import Sample, discover
from pipeline.run.selection import keys_text, listed, read_keys, select, shard
from tests.fakes.fake_server import FakeServer
from tests.test_runner import lines, make_dataset, run_infer


def samples_of(root: Path, seconds: list[float]) -> list[Sample]:
    for i, s in enumerate(seconds):
        folder = root / "user_interruption" / str(i)
        folder.mkdir(parents=True)
        sf.write(folder / "input.wav", np.zeros(int(16000 * s), np.float32), 16000)
    return discover(root)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_shards_are_complete_disjoint_and_the_same_every_time(tmp_path: Path, count: int) -> None:
    samples = samples_of(tmp_path, [3, 1, 4, 1, 5, 9, 2, 6, 5])
    shards = [shard(samples, k, count) for k in range(count)]
    keys = [s.key for part in shards for s in part]
    assert sorted(keys) == sorted(s.key for s in samples)  # complete
    assert len(keys) == len(set(keys))  # disjoint
    assert shards == [shard(list(samples), k, count) for k in range(count)]  # deterministic
    for part in shards:  # each in dataset order
        assert part == sorted(part, key=samples.index)


def test_shards_are_balanced_by_duration(tmp_path: Path) -> None:
    samples = samples_of(tmp_path, [10, 2, 2, 2, 2, 6])
    ids = [[s.sample_id for s in shard(samples, k, 2)] for k in range(2)]
    assert ids == [["0"], ["1", "2", "3", "4", "5"]]  # 10 s beside 14 s, not 3 and 3 samples


def test_a_samples_file_round_trips_and_keeps_dataset_order(tmp_path: Path) -> None:
    samples = samples_of(tmp_path / "d", [1, 1, 1])
    path = tmp_path / "list.samples"
    path.write_text(keys_text(["user_interruption/2", "user_interruption/0"], "two of\nthree"))
    assert read_keys(path) == ["user_interruption/2", "user_interruption/0"]
    assert [s.sample_id for s in listed(samples, read_keys(path), path)] == ["0", "2"]


def test_a_samples_file_naming_other_samples_is_an_error_naming_it(tmp_path: Path) -> None:
    samples = samples_of(tmp_path / "d", [1])
    path = tmp_path / "list.samples"
    path.write_text("user_interruption/0\nuser_interruption/7 (clean_)\n")
    with pytest.raises(ConfigError, match=r"list\.samples lists 1 sample.*user_interruption/7"):
        listed(samples, read_keys(path), path)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_keys(tmp_path / "nope.samples")


def test_select_applies_the_file_then_the_shard(tmp_path: Path) -> None:
    samples = samples_of(tmp_path / "d", [1, 1, 1, 1])
    path = tmp_path / "l.samples"
    path.write_text("user_interruption/1\nuser_interruption/2\nuser_interruption/3\n")
    settings = InferSettings(samples_file=path, shard="1/2").validate()
    assert [s.sample_id for s in select(settings, samples)] == ["2"]  # 1, 3 | 2 by load


@pytest.mark.parametrize("text", ["2/2", "1", "a/3", "-1/2", "0/0"])
def test_a_bad_shard_is_a_settings_error(text: str) -> None:
    with pytest.raises(ConfigError, match="shard"):
        InferSettings(shard=text).validate()


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*")
    }


def test_infer_with_an_output_root_leaves_the_dataset_untouched_and_resumes(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    make_dataset(data, 3)
    before = snapshot(data)
    with FakeServer() as srv:
        assert run_infer(srv.address, data, tmp_path / "r1", "--output-root", str(out)) == 0
        assert run_infer(srv.address, data, tmp_path / "r2", "--output-root", str(out)) == 0
        assert len(srv.sessions) == 3  # the second run found every output complete
    assert snapshot(data) == before  # nothing written, not even a lock
    for i in range(3):
        assert (out / "user_interruption" / str(i) / "output.wav").is_file()
        assert (out / "user_interruption" / str(i) / "output_text.json").is_file()
    assert [r["status"] for r in lines(tmp_path / "r2")] == ["skipped"] * 3


def test_infer_runs_its_shard_of_its_samples_file_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset(data, 5)
    keys = tmp_path / "rest.samples"
    keys.write_text("user_interruption/0\nuser_interruption/3\nuser_interruption/4\n")
    with FakeServer() as srv:
        for k in range(2):
            args = ("--samples-file", str(keys), "--shard", f"{k}/2")
            assert run_infer(srv.address, data, tmp_path / f"r{k}", *args) == 0
    done = [r["id"] for k in range(2) for r in lines(tmp_path / f"r{k}")]
    assert sorted(done) == ["0", "3", "4"]
