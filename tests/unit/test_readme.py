"""The README's reference tables are generated from the code, so they cannot drift.

Regenerate them with ``python tests/unit/test_readme.py --write``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def options_table() -> str:
    from driftcar.sidecar.config import OPTIONS

    lines = ["| key (YAML) | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for option in OPTIONS:
        default = option.default
        if default in (None, (), {}, ""):
            default = "—"
        elif isinstance(default, bool):
            default = str(default).lower()
        flag = option.flag + ("" if not option.metavar else f" {option.metavar}")
        meaning = option.help.replace("|", "\\|")
        lines.append(f"| `{option.key}` | `{flag}` | `{option.env}` | `{default}` | {meaning} |")
    return "\n".join(lines)


def metrics_table() -> str:
    from driftcar.sidecar.telemetry import names

    out = subprocess.run(
        [sys.executable, "-m", "driftcar.sidecar.telemetry.names", "--markdown"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "agent"), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert names  # the module the table comes from
    return out


GENERATED = {"options": options_table, "metrics": metrics_table}


def _block(text: str, name: str) -> re.Match:
    match = re.search(rf"(<!-- {name}:begin[^>]*-->\n)(.*?)(<!-- {name}:end -->)", text, re.S)
    assert match, f"README.md lacks the <!-- {name}:begin --> ... <!-- {name}:end --> markers"
    return match


def write() -> None:
    text = README.read_text()
    for name, render in GENERATED.items():
        m = _block(text, name)
        text = text[: m.start(2)] + render() + "\n" + text[m.end(2):]
    README.write_text(text)


def test_readme_options_table_matches_the_code():
    assert _block(README.read_text(), "options").group(2).strip() == options_table()


def test_readme_metric_reference_matches_the_code():
    assert _block(README.read_text(), "metrics").group(2).strip() == metrics_table()


def test_readme_states_the_two_commands_and_they_exist_in_the_makefile():
    text = README.read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no '{target}' target"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "agent"))
    if "--write" in sys.argv:
        write()
        print("README.md tables regenerated")
