"""``python -m compliance.gen``: the SOUP list, the consistency checks, the documents.

    soup [--write]                   check (or rewrite) compliance/data/soup.json from uv.lock
    check                            all consistency checks (collects the tests with pytest)
    render --out DIR [--junit FILE]  write every document (Markdown + HTML) into DIR

``check`` and ``render`` exit 1 when a check fails (or, for render, a test failed in the
JUnit run); render writes the documents either way, so the failures are documented.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compliance.gen import soup as soup_module
from compliance.gen.data import check_data, check_tests, load_data
from compliance.gen.render import render
from compliance.gen.trace import collect_tests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compliance.gen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    soup = sub.add_parser("soup", help="check or regenerate the SOUP list from uv.lock")
    soup.add_argument("--write", action="store_true", help="rewrite compliance/data/soup.json")
    sub.add_parser("check", help="run every consistency check")
    rend = sub.add_parser("render", help="render the documents")
    rend.add_argument("--out", type=Path, default=Path("var/compliance"))
    rend.add_argument("--junit", type=Path, help="JUnit XML of the test run to report")
    rend.add_argument("--tests-json", type=Path, help="collected {node id: [ids]} (else collect)")
    args = parser.parse_args(argv)

    if args.command == "soup":
        if args.write:
            generated = soup_module.generate()
            soup_module.SOUP_JSON.write_text(soup_module.dump(generated))
            print(f"wrote {soup_module.SOUP_JSON}: {len(generated['packages'])} packages")
            return 0
        problems = soup_module.staleness()
    elif args.command == "check":
        data = load_data()
        names = {p["name"] for p in json.loads(soup_module.SOUP_JSON.read_text())["packages"]}
        problems = soup_module.staleness() + check_data(data, names)
        problems += check_tests(data.requirements, collect_tests())
    else:
        test_map = json.loads(args.tests_json.read_text()) if args.tests_json else None
        result = render(args.out, args.junit, test_map)
        print(f"compliance documents written to {args.out}/ ({len(result.files)} files)")
        for problem in result.problems:
            print(f"CHECK FAILED: {problem}")
        if result.failed_tests:
            print(f"{result.failed_tests} tests failed or errored in {args.junit}")
        return 0 if result.ok else 1
    for problem in problems:
        print(problem)
    print("OK" if not problems else f"{len(problems)} problems")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
