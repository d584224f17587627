"""The site scripts (``airgap/*.py``) run on the sites' Python, 3.8 or newer.

``vermin`` reads them and names every feature newer than 3.8. Annotations count only
where Python evaluates them: in a module without ``from __future__ import annotations``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERMIN = Path(sys.executable).with_name("vermin")
FUTURE_ANNOTATIONS = "from __future__ import annotations"


def newer_than_python38(files: list[Path]) -> str:
    """vermin's violations of ``--target=3.8-`` in ``files``; "" when there are none."""
    lazy = [f for f in files if FUTURE_ANNOTATIONS in f.read_text()]
    evaluated = [f for f in files if f not in lazy]
    found = []
    for group, flags in ((lazy, []), (evaluated, ["--eval-annotations"])):
        if not group:
            continue
        cmd = [str(VERMIN), "--target=3.8-", "--violations", "--no-tips", "--processes=1"]
        done = subprocess.run(
            [*cmd, *flags, *map(str, group)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            found.append(done.stdout + done.stderr)
    return "\n".join(found)


def test_site_scripts_need_no_python_newer_than_3_8() -> None:
    scripts = sorted((REPO / "airgap").glob("*.py"))
    assert {p.name for p in scripts} >= {"bundlecheck.py", "ed25519.py", "sitectl.py"}
    assert newer_than_python38(scripts) == ""


def test_the_check_finds_python_39_features(tmp_path: Path) -> None:
    evaluated = tmp_path / "evaluated.py"
    evaluated.write_text("def f(x: list[int]) -> None:\n    return None\n")
    assert "list[..]" in newer_than_python38([evaluated])
    lazy = tmp_path / "lazy.py"
    lazy.write_text(f"{FUTURE_ANNOTATIONS}\n\n\ndef f(x: list[int]) -> None:\n    return None\n")
    assert newer_than_python38([lazy]) == ""
    member = tmp_path / "member.py"
    member.write_text(f'{FUTURE_ANNOTATIONS}\n\nprint("ab".removeprefix("a"))\n')
    assert "removeprefix" in newer_than_python38([member])
