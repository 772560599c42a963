#!/usr/bin/env python3
"""Run the upstream Kyutai server (`python -m moshi.server ARGS`) on machines without CUDA.

    .venv-server/bin/python containers/tiny_moshi/serve.py [moshi.server arguments...]

`moshi.server.ServerState.warmup()` (moshi 0.2.13) ends with an unguarded
`torch.cuda.synchronize()`, which raises on a CPU-only torch. When CUDA is not available this
launcher replaces that function with a no-op, then runs the `moshi.server` module as `__main__`
with the remaining arguments, exactly as `python -m moshi.server` would. With a GPU nothing is
patched.
"""

from __future__ import annotations

import runpy
from typing import Any

import torch


def _no_synchronize(device: Any = None) -> None:
    """Stand-in for `torch.cuda.synchronize` when there is no CUDA device."""


def main() -> None:
    if not torch.cuda.is_available():
        torch.cuda.synchronize = _no_synchronize
    # run_module with alter_sys=True sets sys.argv[0] to the module's file, like `python -m`;
    # the remaining arguments are left as they are in sys.argv[1:].
    runpy.run_module("moshi.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
