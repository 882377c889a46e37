"""What every driftcar child process needs from its parent: an environment in which driftcar imports
as it does in the parent, and an exit when the parent dies.

Used by the hook's helper process, the sidecar's gRPC front and its decode pool. Leaf module: no
driftcar imports beyond the package itself.
"""

from __future__ import annotations

import os
import signal

__all__ = ["child_env", "die_with_parent"]


def child_env() -> dict[str, str]:
    """The environment, with driftcar importable in the child as it is here: a source tree on
    ``sys.path`` goes on ``PYTHONPATH``; an installed one (site-packages) is found anyway, and
    putting site-packages ahead of the standard library could shadow it."""
    import site

    import driftcar

    home = os.path.dirname(os.path.dirname(os.path.abspath(driftcar.__file__)))
    env = dict(os.environ)
    if home not in {*site.getsitepackages(), site.getusersitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [home, env.get("PYTHONPATH")]))
    return env


def die_with_parent(parent: int) -> None:
    """In the child: exit when the parent dies, even by SIGKILL. Without it a killed sidecar left
    its decode process orphaned and spinning (seen after ``kill -9`` in the crash tests)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux: the child's own end-of-pipe handling remains
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(0)
