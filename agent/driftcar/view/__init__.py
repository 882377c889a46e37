"""Looking at drift: the live page on the sidecar and self-contained HTML reports.

:mod:`.document` builds one JSON-ready view from stats objects, :mod:`.render` (with
:mod:`.svg`) draws it as HTML + inline SVG, :mod:`.live` serves it at ``/`` on the
sidecar, :mod:`.offline` makes it from files (``driftcar report``, :func:`report`).
"""

from driftcar.view.offline import Report, report

__all__ = ["report", "Report"]
