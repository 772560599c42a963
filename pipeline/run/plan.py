"""Which server runs which samples, in which order: a deterministic function of the dataset,
the settings and the number of servers, so that the same command gives the same outputs.

PersonaPlex seeds its RNG once per process and samples its tokens: a sample's output depends on
the sessions its server ran before it. A shared queue would make that depend on timing; here
each server gets its own list, fixed before the first session. Samples are dealt in dataset
order to the server with the least audio so far (ties: the lowest server), so the servers
finish at about the same time without stealing each other's work.
"""

from __future__ import annotations

from collections.abc import Sequence

import soundfile as sf

from pipeline.dataset.discovery import Sample


def _seconds(sample: Sample) -> float:
    """The input's duration from its header (0 for a missing or unreadable input: it fails
    at once when its turn comes)."""
    try:
        info = sf.info(str(sample.input_path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0.0
    return float(info.frames) / float(info.samplerate) if info.samplerate else 0.0


def assign(samples: Sequence[Sample], servers: int) -> list[list[Sample]]:
    """Each server's samples, in the order it runs them."""
    if servers < 1:
        raise ValueError("at least one server is needed")
    lanes: list[list[Sample]] = [[] for _ in range(servers)]
    load = [0.0] * servers
    for sample in samples:
        k = min(range(servers), key=lambda i: (load[i], i))
        lanes[k].append(sample)
        load[k] += _seconds(sample)
    return lanes


def hand_on(rest: Sequence[Sample], survivors: Sequence[int]) -> dict[int, list[Sample]]:
    """A server gone for good: its remaining samples dealt in order, round-robin over the
    surviving servers in server order (appended to their own lists)."""
    dealt: dict[int, list[Sample]] = {k: [] for k in survivors}
    for i, sample in enumerate(rest):
        dealt[survivors[i % len(survivors)]].append(sample)
    return dealt


def describe(lanes: Sequence[Sequence[Sample]], names: Sequence[str]) -> list[dict[str, object]]:
    """The plan as the manifest records it: per server (in order), its samples in order."""
    return [
        {"server": name, "samples": [s.key for s in lane]}
        for name, lane in zip(names, lanes, strict=True)
    ]
