"""Command line: ``python -m pipeline <command>``: parse, run the command, draw its progress."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

from pipeline.cli.options import build_parser, settings_values
from pipeline.config import ConfigError, InferSettings, resolve_bench_settings, resolve_settings
from pipeline.dataset.discovery import DatasetError
from pipeline.stream.protocol import ServerAddressError

if TYPE_CHECKING:
    from pipeline.run.sources import ServerSource


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


def run_command(settings: InferSettings, source: ServerSource, t_command: float) -> int:
    """`infer` and `bench`: the one run entry point, drawn on the terminal."""
    from pipeline.cli.render import ConsoleObserver, print_summary
    from pipeline.run.run import execute_run

    console = Console(stderr=True)
    with ConsoleObserver(console) as observer:
        outcome = execute_run(settings, source, observer, t_command=t_command)
    if outcome.records.manifest and not outcome.preflight_failed:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print_summary(console, outcome)
    return outcome.exit_code


def evaluate_command(ns: argparse.Namespace) -> int:
    """`evaluate`: outputs to scores; a usage error (a stage that cannot run, a wrong FDB
    checkout, a wrong root) exits 2 before any sample."""
    from pipeline.evaluate.fdb_repo import FdbRepoError
    from pipeline.evaluate.runner import EvalUsageError, evaluate
    from pipeline.evaluate.settings import EvalSettings, JudgeSettings

    try:
        judge = JudgeSettings(
            base_url=ns.judge_base_url,
            api_key_env=ns.judge_api_key_env,
            model=ns.judge_model,
            timeout_s=ns.judge_timeout,
            attempts=ns.judge_attempts,
            reasks=ns.judge_reasks,
        )
        settings = EvalSettings(
            root=ns.root,
            tasks=tuple(ns.tasks),
            prefix=ns.prefix,
            stages=tuple(ns.stages),
            fdb_repo=ns.fdb_repo,
            run_dir=ns.run_dir,
            output_root=ns.output_root,
            mode="fdb-compat" if ns.fdb_compat else "corrected",
            judge=judge,
            asr_model=ns.asr_model,
            asr_python=ns.asr_python,
        )
    except ValueError as exc:  # a setting out of range
        logging.getLogger("pipeline").error("%s", exc)
        return 2
    try:
        code, _ = evaluate(settings)
    except (EvalUsageError, FdbRepoError) as exc:
        logging.getLogger("pipeline").error("%s", exc)
        return 2
    return code


def main(argv: Sequence[str] | None = None) -> int:
    t_command = time.monotonic()
    parser = build_parser()
    ns = parser.parse_args(argv)
    setup_logging(ns.verbose)
    log = logging.getLogger("pipeline")
    try:
        if ns.command == "infer":
            from pipeline.run.sources import ExistingServer

            settings = resolve_settings(settings_values(ns), ns.config)
            return run_command(settings, ExistingServer(settings), t_command)
        if ns.command == "bench":
            from pipeline.run.sources import StartedServers

            bench = resolve_bench_settings(settings_values(ns), ns.config)
            return run_command(bench, StartedServers(bench), t_command)
        if ns.command == "slurm":
            from pipeline.cli import slurm

            return slurm.run(ns, settings_values(ns))
        if ns.command == "cleanup":
            from pipeline.server.cleanup import cleanup

            return cleanup(ns.run_id)
        if ns.command == "evaluate":
            return evaluate_command(ns)
        if ns.command == "synth-data":
            from pipeline.dataset.synthesize import SynthSpec, synthesize

            n = synthesize(ns.out, SynthSpec(per_task=ns.per_task, formats=ns.formats))
            log.info("wrote %d synthetic samples under %s", n, ns.out)
            return 0
    except (ConfigError, DatasetError, ServerAddressError) as exc:
        log.error("%s", exc)
        return 2
    parser.error(f"unknown command {ns.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
