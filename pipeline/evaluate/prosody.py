"""The ``prosody`` stage's requirements (FDB v1.5's ``general_before_after`` speech features).

FDB's features before and after the overlap are UTMOSv2 (and optionally SQUIM) quality scores,
words per minute, and pitch and intensity statistics. Its pitch tries Praat (parselmouth) and
silently falls back to librosa's pYIN or torchaudio's YIN when Praat is absent, so its numbers
depend on what happens to be installed. This pipeline requires Praat explicitly, never falls
back, and names what is missing. This version computes none of the features: FDB computes them
on speech trimmed by silero VAD and split at the overlap, together with UTMOSv2, whose weights
cannot be fetched here; the stage is reported as not run, with the reason.
"""

from __future__ import annotations

from importlib import metadata

# The distribution that provides `import parselmouth` (PyPI's "parselmouth" is another project)
PRAAT = "praat-parselmouth"
NOT_BUILT = (
    "FDB's before/after speech features also need UTMOSv2's weights (not fetchable here) and"
    " are not in this version of fdb-pipeline"
)


def prosody_requirement() -> str | None:
    """Why the prosody stage cannot run here (this version: always a reason)."""
    try:
        metadata.version(PRAAT)
    except metadata.PackageNotFoundError:
        return f"{PRAAT} (pip install {PRAAT}; FDB would fall back to other pitch trackers)"
    return NOT_BUILT
