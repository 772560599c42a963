#!/usr/bin/env python3
"""Write a random-weight PersonaPlex model that NVIDIA's own server can load on a CPU.

Run it with the PersonaPlex venv's python (scripts/setup-personaplex-env.sh):

    .venv-personaplex/bin/python containers/tiny_personaplex/make_tiny_personaplex.py OUT_DIR

OUT_DIR receives `tokenizer.model` (sentencepiece, trained here), `model.safetensors` (LM),
`mimi.safetensors` (codec), `config.json` (what the server downloads from the hub only to count
downloads; served locally by the launcher), `voices/` with the 18 built-in voice names as `.pt`
embeddings made by the server's own code for this model plus one custom `.wav` voice, and
`tiny_personaplex.json`, written last: it marks OUT_DIR complete.
"""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import numpy as np
import sentencepiece as spm
import sphn
import torch
from moshi.models import loaders
from moshi.models.lm import LMGen
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny

VOICES = [
    f"{k}{i}" for k, n in (("NATF", 4), ("NATM", 4), ("VARF", 5), ("VARM", 5)) for i in range(n)
]
CUSTOM_VOICE = "custom.wav"
TEXT_VOCAB = 128
WORDS = [
    "you",
    "are",
    "a",
    "helpful",
    "and",
    "friendly",
    "assistant",
    "wise",
    "teacher",
    "answer",
    "questions",
    "clear",
    "engaging",
    "system",
    "enjoy",
    "having",
    "good",
    "conversation",
    "name",
    "is",
    "talk",
    "about",
    "the",
    "weather",
    "train",
    "time",
    "yes",
    "no",
]


def train_tokenizer(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = (
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(3000)
    )
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines,
        model_writer=model,
        vocab_size=TEXT_VOCAB,
        model_type="bpe",
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,  # the server skips text tokens 0 and 3
        user_defined_symbols=["<system>"],
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of the state dict (the server loads onto a meta-initialised model, so a
    missing key would stay unloaded), each with storage of its own, as safetensors wants."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def build_mimi(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    load = loaders.load_model
    loaders.load_model = lambda model, filename: None  # build, do not load
    try:
        mimi = loaders.get_mimi("random.safetensors", "cpu")
    finally:
        loaders.load_model = load
    tiny.randomize_codebooks(mimi, seed + 1)
    return mimi


def voice_recording(index: int, seconds: float = 1.0) -> np.ndarray:
    """A short synthetic 'voice': a vowel-like tone with its own pitch and some noise."""
    rate = loaders.SAMPLE_RATE
    t = np.arange(int(rate * seconds)) / rate
    pitch = 110 + 12 * index
    x = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    x += 0.05 * np.random.default_rng(index).standard_normal(t.size)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def make_voices(
    lm: torch.nn.Module, mimi: torch.nn.Module, sp: spm.SentencePieceProcessor, folder: Path
) -> None:
    """The built-in names as .pt embeddings, made by the server's own LMGen from recordings."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = LMGen(
        lm,
        audio_silence_frame_cnt=int(0.5 * mimi.frame_rate),
        sample_rate=mimi.sample_rate,
        device="cpu",
        frame_rate=mimi.frame_rate,
        save_voice_prompt_embeddings=True,
    )
    mimi.streaming_forever(1)
    gen.streaming_forever(1)
    for index, name in enumerate(VOICES):
        wav = folder / f"{name}.wav"
        sphn.write_wav(str(wav), voice_recording(index), mimi.sample_rate)
        mimi.reset_streaming()
        gen.reset_streaming()
        gen.load_voice_prompt(str(wav))
        gen.text_prompt_tokens = sp.encode("<system> You are a test. <system>")
        with torch.no_grad():
            gen.step_system_prompts(mimi)  # saves NAME.pt beside NAME.wav
        wav.unlink()
    sphn.write_wav(str(folder / CUSTOM_VOICE), voice_recording(len(VOICES)), mimi.sample_rate)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    if (out / tiny.SETTINGS_FILE).is_file():
        print(f"tiny PersonaPlex model already complete in {out}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    seed = 20260
    (out / "tokenizer.model").write_bytes(train_tokenizer(seed))
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    tiny.apply(loaders, text_card=sp.vocab_size())
    mimi = build_mimi(seed)
    save_file(cpu_state(mimi), str(out / "mimi.safetensors"))
    torch.manual_seed(seed + 2)
    lm = loaders.get_moshi_lm(None, device="cpu", dtype=torch.bfloat16)
    save_file(cpu_state(lm), str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"model_type": "personaplex-tiny"}) + "\n")
    make_voices(lm, mimi, sp, out / "voices")
    settings = {"text_card": sp.vocab_size(), "voices": [f"{v}.pt" for v in VOICES]}
    (out / tiny.SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    print(f"tiny PersonaPlex model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
