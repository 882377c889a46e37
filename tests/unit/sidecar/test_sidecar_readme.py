"""The sidecar README documents every configuration option (flag and environment variable)."""

from pathlib import Path

from driftcar.sidecar.config import OPTIONS

README = Path(__file__).resolve().parents[3] / "agent" / "driftcar" / "sidecar" / "README.md"


def test_readme_lists_every_option():
    text = README.read_text()
    missing = [o.key for o in OPTIONS if f"`{o.flag}`" not in text or f"`{o.env}`" not in text]
    assert not missing, f"add these options to {README}: {missing}"
