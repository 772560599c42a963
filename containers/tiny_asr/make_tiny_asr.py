#!/usr/bin/env python3
"""Write a tiny random-weight FastConformer-TDT ASR model as a ``.nemo`` file, offline.

Run it with the Python of ``.venv-asr`` (NeMo, torch, sentencepiece):

    .venv-asr/bin/python containers/tiny_asr/make_tiny_asr.py OUT.nemo [--seed N]

The model has the architecture family of FDB's ASR model (nvidia/parakeet-tdt-0.6b-v2:
``EncDecRNNTBPEModel``, FastConformer encoder, TDT decoding with durations 0-4) at toy size:
one encoder layer of width 32, a 64-piece SentencePiece vocabulary trained here on a few
generated sentences, random weights. Its joint network's output bias is set so that greedy
decoding emits word-initial pieces (whole words) and never a zero duration: on any audio it
writes words with timestamps, which is all the pipeline's tests need of it. What it says means
nothing. The file is written atomically; ``restore_from`` loads it with no network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

VOCAB = 64
WIDTH = 32
DURATIONS = [0, 1, 2, 3, 4]
TEXT = """the quick brown fox jumps over a lazy dog while seven bright stars shine above
quiet hills and we talk about books music travel weather coffee people work home
yes no maybe right okay sure thanks hello goodbye please wait listen tell me more"""
WORDS = TEXT.split()


def sentences() -> list[str]:
    """Deterministic text for the tokenizer: every word, in several orders."""
    out = []
    for step in (1, 3, 5, 7, 11):
        order = [WORDS[(i * step) % len(WORDS)] for i in range(len(WORDS))]
        out += [" ".join(order[i : i + 9]) for i in range(0, len(order), 9)]
    return out


def train_tokenizer(folder: Path) -> None:
    import sentencepiece as spm

    text = folder / "text.txt"
    text.write_text("\n".join(sentences()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=VOCAB,
        model_type="bpe",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    pieces = [line.split("\t")[0] for line in (folder / "tokenizer.vocab").read_text().splitlines()]
    (folder / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")


def config(tokenizer_dir: Path) -> dict[str, object]:
    return {
        "sample_rate": 16000,
        "model_defaults": {"enc_hidden": WIDTH, "pred_hidden": WIDTH, "joint_hidden": WIDTH},
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 80,
            "n_fft": 512,
            "dither": 0.0,
            "pad_to": 0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 80,
            "feat_out": -1,
            "n_layers": 1,
            "d_model": WIDTH,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": WIDTH,
            "ff_expansion_factor": 2,
            "self_attention_model": "rel_pos",
            "n_heads": 2,
            "att_context_size": [-1, -1],
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm",
            "dropout": 0.0,
            "dropout_pre_encoder": 0.0,
            "dropout_emb": 0.0,
            "dropout_att": 0.0,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None,
            "random_state_sampling": False,
            "blank_as_pad": True,
            "prednet": {"pred_hidden": WIDTH, "pred_rnn_layers": 1, "dropout": 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None,
            "preserve_memory": False,
            "fuse_loss_wer": False,
            "jointnet": {"joint_hidden": WIDTH, "activation": "relu", "dropout": 0.0},
            "num_extra_outputs": len(DURATIONS),
        },
        "decoding": {
            "strategy": "greedy_batch",
            "model_type": "tdt",
            "durations": DURATIONS,
            "greedy": {"max_symbols": 10},
        },
        "loss": {
            "loss_name": "tdt",
            "tdt_kwargs": {
                "fastemit_lambda": 0.0,
                "clamp": -1.0,
                "durations": DURATIONS,
                "sigma": 0.02,
                "omega": 0.1,
            },
        },
        "optim": {"name": "adamw", "lr": 1e-3},
    }


def bias_to_words(model: object) -> None:
    """Greedy TDT takes the argmax of the token logits (blank is index VOCAB) and of the
    duration logits: rule out every piece but the word-initial ones (so each emitted piece is
    a whole word), let those and blank compete through the random weights (scaled up, so the
    audio decides), and favour durations of 1-2 frames over 0 (which would stay on a frame)."""
    import torch

    linears = [m for m in model.joint.joint_net.modules() if isinstance(m, torch.nn.Linear)]  # type: ignore[attr-defined]
    last = linears[-1]
    vocab = model.tokenizer.vocab  # type: ignore[attr-defined]
    with torch.no_grad():
        last.weight.mul_(4.0)
        bias = torch.full_like(last.bias, -100.0)
        for i, piece in enumerate(vocab):
            if piece.startswith("\u2581") and len(piece) > 2:
                bias[i] = 0.0
        bias[VOCAB] = -1.5  # blank
        bias[VOCAB + 1 :] = torch.tensor([-5.0, 3.0, 2.0, 0.0, -1.0])
        last.bias.copy_(bias)


def build(out: Path, seed: int) -> None:
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf, open_dict

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="tiny-asr-") as tmp:
        folder = Path(tmp)
        train_tokenizer(folder)
        model = EncDecRNNTBPEModel(cfg=OmegaConf.create(config(folder)))
        # transcribe() reads one key of the validation set's config (no data set is used);
        # added after construction, which would otherwise set up that data set
        with open_dict(model.cfg):
            model.cfg.validation_ds = {"use_start_end_token": False}
        bias_to_words(model)
        model.eval()
        partial = out.with_name(f".{out.name}.partial")
        model.save_to(str(partial))
    os.replace(partial, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the .nemo file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    build(args.out, args.seed)
    print(f"{args.out}: {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
