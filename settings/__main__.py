"""``python -m settings``: the settings reference and a check of this environment.

python -m settings reference [--write]   print (or write settings/REFERENCE.md)
python -m settings check                 refuse unknown MINIVESS_* names (exit 78)
"""

from __future__ import annotations

import argparse
import sys

from settings.base import EXIT_CONFIG, SettingsError
from settings.reference import REFERENCE, render
from settings.registry import check_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m settings", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reference = commands.add_parser("reference", help="the settings reference (Markdown)")
    reference.add_argument("--write", action="store_true", help=f"write {REFERENCE.name}")
    commands.add_parser("check", help="check the MINIVESS_* names of this environment")
    args = parser.parse_args(argv)
    if args.command == "reference":
        if args.write:
            REFERENCE.write_text(render())
        else:
            print(render(), end="")
        return 0
    try:
        check_environment()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print("ok: every MINIVESS_* variable here is a known setting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
