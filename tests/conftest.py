import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository root (for ``tests.support``) and the source root (runs without an editable install).
for path in (_ROOT, os.path.join(_ROOT, "agent")):
    if path not in sys.path:
        sys.path.insert(0, path)
