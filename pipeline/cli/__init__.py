"""Command line: ``python -m pipeline <command>``. Parses, runs the command, renders its progress."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from pipeline.cli.options import build_parser, settings_values
from pipeline.config import ConfigError, resolve_bench_settings, resolve_settings
from pipeline.dataset.discovery import DatasetError
from pipeline.stream.protocol import ServerAddressError


def setup_logging(verbose: bool) -> None:
    """Rich logs on a terminal; plain, unwrapped lines in a file (Slurm logs, CI, pipes)."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        )
    handler.set_name("fdb-pipeline")
    logger = logging.getLogger("pipeline")
    for old in [h for h in logger.handlers if h.get_name() == "fdb-pipeline"]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    t_command = time.monotonic()
    parser = build_parser()
    ns = parser.parse_args(argv)
    setup_logging(ns.verbose)
    log = logging.getLogger("pipeline")
    try:
        if ns.command == "infer":
            from pipeline.infer import infer

            return infer(resolve_settings(settings_values(ns), ns.config))
        if ns.command == "bench":
            from pipeline.bench import bench

            return bench(resolve_bench_settings(settings_values(ns), ns.config), t_command)
        if ns.command == "cleanup":
            from pipeline.server.cleanup import cleanup

            return cleanup(ns.run_id)
        if ns.command == "synth-data":
            from pipeline.dataset.synthesize import SynthSpec, synthesize

            n = synthesize(ns.out, SynthSpec(per_task=ns.per_task))
            log.info("wrote %d synthetic samples under %s", n, ns.out)
            return 0
    except (ConfigError, DatasetError, ServerAddressError) as exc:
        log.error("%s", exc)
        return 2
    parser.error(f"unknown command {ns.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
