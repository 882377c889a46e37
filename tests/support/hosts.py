"""A private /etc/hosts for one child process: DNS-driven service discovery on loopback.

The child runs in its own mount namespace (``unshare --mount``) with a test-owned hosts file
bind-mounted over /etc/hosts, so a name such as ``gateways.driftcar.test`` resolves to loopback
addresses the test chooses and changes while the child runs. The rest of the machine never sees
it, and the namespace ends with the child. Needs root (or CAP_SYS_ADMIN); without it a test
skips, or fails when ``DRIFTCAR_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest


class HostsFile:
    """A hosts file rewritten in place: a bind mount follows the inode, so never replace the file."""

    def __init__(self, path: Path, name: str, addresses: list[str]):
        self.path = Path(path)
        self.name = name
        self.addresses = list(addresses)
        self.path.touch()
        self._write()

    def set(self, addresses: list[str]) -> None:
        self.addresses = list(addresses)
        self._write()

    def _write(self) -> None:
        text = "127.0.0.1 localhost\n" + "".join(f"{a} {self.name}\n" for a in self.addresses)
        fd = os.open(self.path, os.O_WRONLY)  # same inode; write first, then cut, so no reader sees it empty
        try:
            os.write(fd, text.encode())
            os.ftruncate(fd, len(text.encode()))
        finally:
            os.close(fd)


def with_hosts(hosts: Path, command: list[str]) -> list[str]:
    """``command`` run in a new mount namespace that sees ``hosts`` as /etc/hosts (exec: same pid)."""
    inner = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec {shlex.join(command)}"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def require_private_hosts(tmp_path: Path) -> None:
    """Skip (or fail under DRIFTCAR_REQUIRE_ALL=1) unless a private /etc/hosts works here."""
    probe = tmp_path / "hosts-probe"
    probe.write_text("127.0.0.9 probe.driftcar.test\n")
    reason = None
    if shutil.which("unshare") is None:
        reason = "unshare (util-linux) is not installed"
    else:
        try:
            run = subprocess.run(with_hosts(probe, ["cat", "/etc/hosts"]), capture_output=True, text=True, timeout=20)
            if run.returncode != 0 or "probe.driftcar.test" not in run.stdout:
                reason = f"a private /etc/hosts needs a mount namespace (root): {run.stderr.strip()[-300:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"unshare --mount failed: {exc!r}"
    if reason is None:
        return
    if os.environ.get("DRIFTCAR_REQUIRE_ALL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)
