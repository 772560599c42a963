#!/usr/bin/env python3
"""Write a random-weight Moshi model that the real upstream server (`moshi` 0.2.13) can load.

Run it with the server venv's python (it imports `moshi`, `torch`, `sentencepiece`):

    .venv-server/bin/python containers/tiny_moshi/make_tiny_model.py OUT_DIR [--size tiny|real]
        [--seed N] [--device cpu|cuda] [--check-only] [--force]

OUT_DIR receives:
  tokenizer.model    sentencepiece model trained here on generated English text
                     (unk=0, bos=1, eos=2, pad=3; 256 pieces for tiny, 32000 for real)
  config.json        LM config: `moshi.models.loaders._lm_kwargs` keys + `model_type`, with
                     `mimi_config_name` = file:///ABS/OUT_DIR/mimi_config.json (moshi's
                     `loaders.hf_get` turns a `file://` name into a local path, no download)
  model.safetensors  LM weights of a randomly initialised `LMModel` (bfloat16)
  mimi_config.json   Mimi codec config (a variant of `loaders._mimi_config`)
  mimi.safetensors   Mimi weights, random init with random (non-zero) codebooks (float32)
  manifest.json      files, settings and checksums; written last, marks OUT_DIR complete

`--size tiny` (default) is small enough for a 2-core CPU (~25 ms per 80 ms frame).
`--size real` uses the real shapes (the 7B LM and the full Mimi): the same cost per frame as the
real model, for a GPU machine (about 15 GB of LM weights). `--check-only` builds the models on
PyTorch's 'meta' device to check the configs are accepted, and writes nothing.

The output is deterministic for a given --seed (and torch version). If OUT_DIR already holds a
complete model with the same settings, nothing is rewritten. The server command line to use is
printed at the end.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from moshi.models import loaders
from moshi.quantization.core_vq import EuclideanCodebook
from safetensors.torch import save_file

FORMAT_VERSION = 1
TOKENIZER_FILE = "tokenizer.model"
LM_CONFIG_FILE = "config.json"
LM_WEIGHTS_FILE = "model.safetensors"
MIMI_CONFIG_FILE = "mimi_config.json"
MIMI_WEIGHTS_FILE = "mimi.safetensors"
MANIFEST_FILE = "manifest.json"
MODEL_FILES = (TOKENIZER_FILE, LM_CONFIG_FILE, LM_WEIGHTS_FILE, MIMI_CONFIG_FILE, MIMI_WEIGHTS_FILE)

# Special ids the server relies on: it skips text tokens 0 and 3 (unk, pad) and the LM's
# `existing_text_padding_id` is 3.
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
TINY_TEXT_VOCAB = 256
_LM_DEFAULTS: dict[str, Any] = loaders._lm_kwargs
REAL_TEXT_VOCAB = int(_LM_DEFAULTS["text_card"])
# Pieces learnt from the corpus; a larger vocabulary is topped up with generated pseudo-words
# (sentencepiece user-defined symbols), as the small corpus cannot yield 32000 pieces.
TRAINED_PIECES_MAX = 512

_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which "
    "she do how their if will up other about out many then them these so some her would make "
    "like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part "
    "over new sound take only little work know place year live me back give most very after "
    "thing our just name good sentence man think say great where help through much before "
    "line right too mean old any same tell boy follow came want show also around form three "
    "small set put end does another well large must big even such because turn here why ask "
    "went men read need land different home us move try kind hand picture again change off "
    "play spell air away animal house point page letter mother answer found study still learn "
    "should world high every near add food between own below country plant last school father "
    "keep tree never start city earth eye light thought head under story saw left few while "
    "along might close something seem next hard open example begin life always those both "
    "paper together got group often run important until children side feet car mile night "
    "walk white sea began grow took river four carry state once book hear stop without second "
    "later miss idea enough eat face watch far really almost let above girl sometimes "
    "mountain cut young talk soon list song being leave family hello yes okay sure thanks"
)
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())


def corpus(seed: int, sentences: int = 5000) -> Iterator[str]:
    """Deterministic pseudo-English sentences."""
    rng = random.Random(seed)
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        end = rng.choice(".?!.")
        yield " ".join(words).capitalize() + end


def pseudo_words(seed: int, count: int) -> list[str]:
    """`count` distinct pronounceable pseudo-words, deterministic."""
    rng = random.Random(seed + 7919)
    syllables = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
    seen: set[str] = set(WORDS)
    out: list[str] = []
    while len(out) < count:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out


def train_tokenizer(vocab_size: int, seed: int) -> bytes:
    extra = max(0, vocab_size - TRAINED_PIECES_MAX)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=corpus(seed),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
        user_defined_symbols=pseudo_words(seed, extra),
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    data = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=data)
    if sp.vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer has {sp.vocab_size()} pieces, expected {vocab_size}")
    return data


def lm_kwargs(size: str, text_card: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = copy.deepcopy(loaders._lm_kwargs)
    kwargs["text_card"] = text_card
    if size == "tiny":
        kwargs.update(
            dim=64,
            num_heads=4,
            num_layers=1,
            depformer_dim=64,
            depformer_dim_feedforward=int(4.125 * 64),
            depformer_num_heads=4,
            depformer_num_layers=1,
        )
    # Kept from the real model: card 2048, n_q 16, dep_q 8 and the 17 delays.
    return kwargs


def mimi_config(size: str) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(loaders._mimi_config)
    if size == "tiny":
        dim = 64
        config["seanet"].update(dimension=dim, n_filters=4)
        config["quantizer"].update(dimension=32, input_dimension=dim, output_dimension=dim)
        config["transformer"].update(
            d_model=dim,
            num_heads=4,
            num_layers=1,
            dim_feedforward=256,
            input_dimension=dim,
            output_dimensions=[dim],
        )
    return config


def lm_config(size: str, text_card: int, out_dir: Path) -> dict[str, Any]:
    config = lm_kwargs(size, text_card)
    config["model_type"] = "moshi"
    # `CheckpointInfo.from_hf_repo` passes these names to `hf_get`, which maps `file://X` to the
    # local path X. The server's flags override the three weight/tokenizer names anyway.
    config["mimi_config_name"] = file_uri(out_dir / MIMI_CONFIG_FILE)
    config["moshi_name"] = file_uri(out_dir / LM_WEIGHTS_FILE)
    config["mimi_name"] = file_uri(out_dir / MIMI_WEIGHTS_FILE)
    config["tokenizer_name"] = file_uri(out_dir / TOKENIZER_FILE)
    return config


def file_uri(path: Path) -> str:
    """`file://` + the absolute path, as moshi's `loaders.hf_get` reads it: it strips the prefix
    and does not percent-decode, so `Path.as_uri()` would break paths with spaces."""
    return "file://" + str(path)


def build_mimi(config: dict[str, Any], seed: int, device: str) -> torch.nn.Module:
    torch.manual_seed(seed * 2 + 1)
    mimi = loaders.get_mimi(None, config, device=device)
    if device == "meta":
        return mimi
    # A fresh quantizer has all-zero codebooks (`embedding_sum`), so every latent would map to
    # code 0. Give each codebook random entries and mark it initialised.
    gen = torch.Generator(device="cpu").manual_seed(seed * 2 + 2)
    with torch.no_grad():
        for module in mimi.modules():
            if isinstance(module, EuclideanCodebook):
                emb = torch.randn(module.embedding_sum.shape, generator=gen)
                module.embedding_sum.copy_(emb.to(module.embedding_sum.device))
                module.cluster_usage.fill_(1.0)
                module._initialized.fill_(1.0)
    return mimi


def build_lm(kwargs: dict[str, Any], seed: int, device: str) -> torch.nn.Module:
    torch.manual_seed(seed * 2)
    return loaders.get_moshi_lm(None, lm_kwargs=kwargs, device=device, dtype=torch.bfloat16)


def state_for_saving(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU tensors for safetensors, which refuses entries that share storage: copy only those
    (and whatever is not on the CPU or not contiguous), so a real-size LM is not held twice."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in module.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings(size: str, seed: int) -> dict[str, Any]:
    import importlib.metadata as md

    return {
        "format_version": FORMAT_VERSION,
        "size": size,
        "seed": seed,
        "moshi_version": md.version("moshi"),
        "torch_version": torch.__version__.split("+")[0],
    }


def is_complete(out_dir: Path, wanted: dict[str, Any]) -> bool:
    manifest_path = out_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
        config = json.loads((out_dir / LM_CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("settings") != wanted:
        return False
    if config.get("mimi_config_name") != file_uri(out_dir / MIMI_CONFIG_FILE):
        return False  # the folder was moved: the absolute path in config.json is stale
    files = manifest.get("files", {})
    for name in MODEL_FILES:
        path = out_dir / name
        if not path.is_file() or path.stat().st_size != files.get(name, {}).get("bytes"):
            return False
    return True


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_weights(module: torch.nn.Module, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(state_for_saving(module), str(tmp))
    os.replace(tmp, path)


def server_command(out_dir: Path, device: str) -> str:
    here = Path(__file__).resolve().parent
    argv = [
        sys.executable,
        str(here / "serve.py"),
        *("--host", "127.0.0.1", "--port", "8998", "--static", "none", "--device", device),
        *("--config-path", str(out_dir / LM_CONFIG_FILE)),
        *("--moshi-weight", str(out_dir / LM_WEIGHTS_FILE)),
        *("--mimi-weight", str(out_dir / MIMI_WEIGHTS_FILE)),
        *("--tokenizer", str(out_dir / TOKENIZER_FILE)),
    ]
    # NO_TORCH_COMPILE=1: moshi would otherwise torch.compile parts of the model at warm-up
    # (about 12 s more on a cold CPU start, no gain for the tiny model).
    prefix = "HF_HUB_OFFLINE=1 NO_TORCH_COMPILE=1 " if device == "cpu" else "HF_HUB_OFFLINE=1 "
    return prefix + shlex.join(argv)


def check_only(size: str, seed: int) -> None:
    text_card = TINY_TEXT_VOCAB if size == "tiny" else REAL_TEXT_VOCAB
    t0 = time.monotonic()
    lm = build_lm(lm_kwargs(size, text_card), seed, "meta")
    mimi = build_mimi(mimi_config(size), seed, "meta")
    lm_params, mimi_params = count_params(lm), count_params(mimi)
    print(
        f"[make_tiny_model] {size}: configs accepted (built on 'meta' in "
        f"{time.monotonic() - t0:.1f} s): LM {lm_params / 1e6:.1f} M parameters "
        f"(~{lm_params * 2 / 1e9:.2f} GB in bfloat16), Mimi {mimi_params / 1e6:.1f} M parameters "
        f"(~{mimi_params * 4 / 1e9:.2f} GB in float32)"
    )


def verify(out_dir: Path) -> None:
    """Load the files the way `moshi.server` does and run one frame through both models."""
    info = loaders.CheckpointInfo.from_hf_repo(
        "unused/unused",
        out_dir / LM_WEIGHTS_FILE,
        out_dir / MIMI_WEIGHTS_FILE,
        out_dir / TOKENIZER_FILE,
        config_path=out_dir / LM_CONFIG_FILE,
    )
    mimi = info.get_mimi(device="cpu")
    lm = info.get_moshi(device="cpu", dtype=torch.bfloat16)
    tokenizer = info.get_text_tokenizer()
    if tokenizer.vocab_size() != lm.text_card:
        raise RuntimeError(f"tokenizer size {tokenizer.vocab_size()} != text_card {lm.text_card}")
    with torch.no_grad():
        frame = torch.randn(1, 1, int(mimi.sample_rate / mimi.frame_rate)) * 0.1
        codes = mimi.encode(frame)
    if codes.shape[1] != lm.dep_q or int(codes.max()) >= lm.card:
        raise RuntimeError(f"unexpected Mimi code shape {tuple(codes.shape)}")


def generate(out_dir: Path, size: str, seed: int, device: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    text_card = TINY_TEXT_VOCAB if size == "tiny" else REAL_TEXT_VOCAB
    timings: dict[str, float] = {}

    t0 = time.monotonic()
    print(f"[make_tiny_model] training a {text_card}-piece sentencepiece tokenizer")
    write_atomic(out_dir / TOKENIZER_FILE, train_tokenizer(text_card, seed))
    timings["tokenizer_s"] = time.monotonic() - t0

    mconf = mimi_config(size)
    write_json(out_dir / MIMI_CONFIG_FILE, mconf)
    kwargs = lm_kwargs(size, text_card)
    write_json(out_dir / LM_CONFIG_FILE, lm_config(size, text_card, out_dir))

    t0 = time.monotonic()
    print(f"[make_tiny_model] building a random {size} Mimi on {device}")
    mimi = build_mimi(mconf, seed, device)
    save_weights(mimi, out_dir / MIMI_WEIGHTS_FILE)
    mimi_params = count_params(mimi)
    del mimi
    timings["mimi_s"] = time.monotonic() - t0

    t0 = time.monotonic()
    print(f"[make_tiny_model] building a random {size} LM on {device}")
    lm = build_lm(kwargs, seed, device)
    lm_params = count_params(lm)
    save_weights(lm, out_dir / LM_WEIGHTS_FILE)
    del lm
    timings["lm_s"] = time.monotonic() - t0

    if size == "tiny":
        t0 = time.monotonic()
        verify(out_dir)
        timings["verify_s"] = time.monotonic() - t0

    manifest = {
        "settings": settings(size, seed),
        "files": {
            name: {"bytes": (out_dir / name).stat().st_size, "sha256": sha256(out_dir / name)}
            for name in MODEL_FILES
        },
        "parameters": {"lm": lm_params, "mimi": mimi_params},
        "text_card": text_card,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    print(
        f"[make_tiny_model] wrote {out_dir}: LM {lm_params / 1e6:.2f} M parameters, "
        f"Mimi {mimi_params / 1e6:.2f} M parameters"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="cpu", help="where to initialise the weights (cuda is faster for real)"
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="build the models on the 'meta' device to check the configs; write nothing",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    args = parser.parse_args(argv)

    if args.check_only:
        check_only(args.size, args.seed)
        return 0

    out_dir: Path = args.out_dir.resolve()
    wanted = settings(args.size, args.seed)
    if not args.force and is_complete(out_dir, wanted):
        print(f"[make_tiny_model] {out_dir} is complete ({args.size}, seed {args.seed}); skipping")
    else:
        if args.force and out_dir.exists():
            for name in (*MODEL_FILES, MANIFEST_FILE):
                (out_dir / name).unlink(missing_ok=True)
        t0 = time.monotonic()
        generate(out_dir, args.size, args.seed, args.device)
        print(f"[make_tiny_model] done in {time.monotonic() - t0:.1f} s")
    run_device = "cpu" if args.size == "tiny" or not torch.cuda.is_available() else "cuda"
    print("[make_tiny_model] start the server with:")
    print(server_command(out_dir, run_device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
