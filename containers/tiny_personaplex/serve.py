#!/usr/bin/env python3
"""Run NVIDIA's PersonaPlex server (`python -m moshi.server`) on a tiny random model, offline.

    .venv-personaplex/bin/python containers/tiny_personaplex/serve.py --tiny-model DIR \\
        [--full-size] [moshi.server arguments: --host --port --static none --device cpu ...]

Before the server's own `main()` runs, this shrinks the model configuration the server's loaders
hard-code (tiny.py), and answers the server's download of `config.json` (made only to count
downloads, even when every weight is local) from DIR. The weights, tokenizer and voice folder
are passed to the server as its own flags; nothing else of the server is changed.

`--full-size` (for a GPU): the real 7B LM and Mimi configuration with random weights made on the
device at start (no weight file is read; no 16 GB file to write or carry), the text vocabulary
of DIR's tokenizer. The built-in `.pt` voices of DIR fit the tiny model only: choose DIR's
`custom.wav` voice, which the server encodes itself.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import huggingface_hub
from moshi.models import loaders

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny


def _take_flag(args: list[str], flag: str) -> bool:
    if flag in args:
        args.remove(flag)
        return True
    return False


def _random_weights(loaders: Any) -> None:
    """Build both models with random weights on their device instead of loading files."""
    get_lm = loaders.get_moshi_lm
    loaders.load_model = lambda model, filename: tiny.randomize_codebooks(model)
    loaders.get_moshi_lm = lambda filename, **kw: get_lm(None, **kw)


def main() -> None:
    args = sys.argv[1:]
    if "--tiny-model" not in args:
        sys.exit("usage: serve.py --tiny-model DIR [--full-size] [moshi.server arguments]")
    i = args.index("--tiny-model")
    model = Path(args[i + 1]).resolve()
    rest = args[:i] + args[i + 2 :]
    full_size = _take_flag(rest, "--full-size")
    settings = json.loads((model / tiny.SETTINGS_FILE).read_text())
    if full_size:
        tiny.apply_full_size(loaders, text_card=int(settings["text_card"]))
        _random_weights(loaders)
    else:
        tiny.apply(loaders, text_card=int(settings["text_card"]))

    download = huggingface_hub.hf_hub_download

    def local_config(repo_id: str, filename: str, *a: Any, **kw: Any) -> str:
        if filename == "config.json":
            return str(model / "config.json")
        return str(download(repo_id, filename, *a, **kw))

    huggingface_hub.hf_hub_download = local_config
    sys.argv = [
        "moshi.server",
        "--moshi-weight", str(model / "model.safetensors"),
        "--mimi-weight", str(model / "mimi.safetensors"),
        "--tokenizer", str(model / "tokenizer.model"),
        "--voice-prompt-dir", str(model / "voices"),
        *rest,
    ]  # fmt: skip
    runpy.run_module("moshi.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
