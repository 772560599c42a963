"""The plan: which server runs which samples, in which order - a function of the data alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.dataset.discovery import Sample
from pipeline.run.plan import assign, describe, hand_on


def samples_of(tmp_path: Path, seconds: list[float]) -> list[Sample]:
    out = []
    for i, s in enumerate(seconds):
        folder = tmp_path / "user_interruption" / str(i)
        folder.mkdir(parents=True)
        sf.write(folder / "input.wav", np.zeros(int(16000 * s), np.float32), 16000)
        out.append(Sample("user_interruption", str(i), folder))
    return out


def test_dealt_by_duration_in_dataset_order_the_same_every_time(tmp_path: Path) -> None:
    samples = samples_of(tmp_path, [10, 2, 2, 2, 2, 6])
    lanes = assign(samples, 2)
    ids = [[s.sample_id for s in lane] for lane in lanes]
    # 0 (10 s) to A; 1-4 (2 s each) to B until B has 8 s; 5 (6 s) to B (8 < 10)
    assert ids == [["0"], ["1", "2", "3", "4", "5"]]
    assert assign(list(samples), 2) == lanes  # a function of the data: same every time
    assert sorted(s.key for lane in lanes for s in lane) == sorted(s.key for s in samples)


def test_a_missing_input_weighs_nothing_and_is_still_planned(tmp_path: Path) -> None:
    samples = samples_of(tmp_path, [1, 1])
    (samples[0].input_path).unlink()
    lanes = assign(samples, 3)
    assert [len(lane) for lane in lanes] == [2, 0, 0]  # 0 s, then the lowest server again


def test_a_dead_servers_rest_goes_round_robin_to_the_survivors_in_order(tmp_path: Path) -> None:
    samples = samples_of(tmp_path, [1, 1, 1])
    dealt = hand_on(samples, [0, 2])
    assert {k: [s.sample_id for s in v] for k, v in dealt.items()} == {0: ["0", "2"], 2: ["1"]}
    plan = describe([samples[:1], samples[1:]], ["a", "b"])
    assert plan == [
        {"server": "a", "samples": ["user_interruption/0"]},
        {"server": "b", "samples": ["user_interruption/1", "user_interruption/2"]},
    ]
