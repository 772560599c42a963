"""``python -m pipeline evaluate``: from outputs to Full-Duplex-Bench scores, sample by sample.

Stages (``stages.STAGES``) write FDB's per-sample files beside the wavs, each carrying the sha256
of its inputs and of the stage's configuration, so a re-run redoes only what changed; ``stats``
turns them into ``scores.json``. Numerical parts are small modules of their own: ``resample``
(torchaudio's kernel in numpy), ``vad`` (silero without PyTorch), ``intervals`` (FDB's timing
intervals), ``rules`` (FDB's v1.0 turn-taking rules).
"""
