"""``python -m map_app -i INPUT -o OUTPUT -m MODELS``: the MAP batch job.

INPUT is a folder of DICOM files (any names, any order, several studies and series) or a
NIfTI volume (``.nii``/``.nii.gz``). Paths default to the MAP environment variables
``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH``. Exit codes
are listed in ``operators/errors.py`` (0 success, 2 usage, 10-15 input, 20 models,
30 outputs, 70 internal, 78 settings); errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from pathlib import Path

from compliance.audit import AuditLog
from map_app.config import AppConfig, load_config
from map_app.stack import ensure_holoscan_stack
from settings.base import EXIT_CONFIG, SettingsError, load
from settings.registry import check_environment
from settings.site import AuditSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m map_app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ.get
    parser.add_argument(
        "-i",
        "--input",
        type=Path,
        default=env("HOLOSCAN_INPUT_PATH"),
        help="DICOM folder or NIfTI file (default $HOLOSCAN_INPUT_PATH)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=env("HOLOSCAN_OUTPUT_PATH"),
        help="output folder (default $HOLOSCAN_OUTPUT_PATH)",
    )
    parser.add_argument(
        "-m",
        "--model",
        type=Path,
        default=env("HOLOSCAN_MODEL_PATH", "models/ensemble"),
        help="ensemble folder with manifest.json (default $HOLOSCAN_MODEL_PATH or models/ensemble)",
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="JSON configuration file (see map_app/config.py)",
    )
    parser.add_argument(
        "-l",
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: the config's log_level (MINIVESS_LOG_LEVEL, WARNING)",
    )
    return parser


def _audit_log(settings: AuditSettings) -> AuditLog | None:
    """The site's audit log when a key for hashing identifiers is configured.

    Audit entries name studies only by keyed hash, so without
    MINIVESS_AUDIT_HMAC_KEY_FILE there is nothing safe to write: research and development
    runs go unaudited, a site sets the key (the service makes one on first start).
    """
    if settings.audit_hmac_key_file is None:
        return None
    return AuditLog.from_settings(settings)


def _settings(config_file: Path | None) -> tuple[AppConfig, AuditSettings]:
    check_environment()
    return load_config(config_file), load(AuditSettings)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.input is None or args.output is None:
        parser.error(
            "input and output are required (-i/-o or HOLOSCAN_INPUT_PATH/HOLOSCAN_OUTPUT_PATH)"
        )
    try:
        config, audit_settings = _settings(args.config)
    except SettingsError as error:
        print(f"map_app: {error}", file=sys.stderr)
        return EXIT_CONFIG
    log_level = args.log_level or config.log_level
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if log_level == "DEBUG":
        os.environ["HOLOSCAN_LOG_LEVEL"] = "INFO"

    from map_app.pipeline import Pipeline
    from operators.errors import PipelineError

    try:
        pipeline = Pipeline(args.model, config, audit_log=_audit_log(audit_settings))
        report = pipeline.run(args.input, args.output)
    except PipelineError as error:
        print(f"map_app: error [{error.reason}]: {error.message}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a bug: one line for the operator, details in the log
        logging.getLogger("map_app").debug("internal error", exc_info=True)
        print(
            f"map_app: internal error ({type(error).__name__}): {error}; rerun with "
            "-l DEBUG for details",
            file=sys.stderr,
        )
        return 70
    for outcome in report.series:
        if outcome.status == "done":
            flag = " REVIEW (out of distribution)" if outcome.out_of_distribution else ""
            print(
                f"series {outcome.series_instance_uid}: vessel volume "
                f"{outcome.vessel_volume_ml:.3f} mL, uncertainty {outcome.uncertainty_score:.4f}"
                f"{flag}"
            )
        else:
            print(
                f"series {outcome.series_instance_uid}: FAILED [{outcome.error_reason}] "
                f"{outcome.error}"
            )
    for skipped in report.skipped_inputs:
        print(f"skipped {skipped.path}: {skipped.reason}")
    print(f"report: {args.output / 'report.json'} ({report.status})")
    return 0


def exit_without_teardown(code: int) -> None:
    """Run the exit handlers, flush, and end the process without the interpreter's teardown.

    A batch job imports ~1,300 modules (Holoscan, OpenVINO, pydicom, highdicom's tables of
    the standard); freeing their objects one by one at exit took 0.5 s of a 7 s small-study
    run on the benchmark machine, for memory the kernel reclaims at once. Nothing is lost:
    every output (SEG, Parametric Map, SR, report.json, audit record) is written and
    fsynced before ``main`` returns, the exit handlers (logging's flush among them) still
    run, and the process starts no thread of its own that could still be working.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    ensure_holoscan_stack("map_app")
    exit_without_teardown(main())
