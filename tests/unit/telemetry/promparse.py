"""A tiny, strict parser of the Prometheus text format 0.0.4 (only for tests).

Returns HELP/TYPE per metric family and samples as (name, labels dict, value);
rejects anything it does not understand so that a malformed exposition fails tests.
"""

from __future__ import annotations

import math
import re

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}[text]
    return float(text)


def parse(text: str) -> tuple[dict, dict, list]:
    """``(helps, types, samples)``; raises ValueError on any malformed line."""
    helps, types, samples = {}, {}, []
    if not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            helps[name] = help_
        elif line.startswith("# TYPE "):
            name, _, type_ = line[7:].partition(" ")
            if type_ not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError(f"bad type in {line!r}")
            if name in types:
                raise ValueError(f"duplicate TYPE for {name}")
            types[name] = type_
        elif line.startswith("#") or not line:
            raise ValueError(f"unexpected line {line!r}")
        else:
            match = _SAMPLE.match(line)
            if not match:
                raise ValueError(f"bad sample line {line!r}")
            name, _, body, value = match.groups()
            labels = {}
            rest = body or ""
            while rest:
                lm = _LABEL.match(rest)
                if not lm:
                    raise ValueError(f"bad labels in {line!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                rest = rest[lm.end():]
            samples.append((name, labels, _value(value)))
    return helps, types, samples
