"""Regenerate the golden vectors (run only when the contract changes on purpose).

    python proto/golden/generate.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import msgpack
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "agent"))

from driftcar.wire import BatchError, Column, decode_batch, encode_batch  # noqa: E402


def _plain(values):
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in values]


def expected_form(body: bytes) -> dict:
    b = decode_batch(body)
    out = {
        "kind": b.kind,
        "rows": b.rows,
        "columns": [[n, b.roles[n], b.types[n], b.classes.get(n), _plain(d)] for n, d in b.columns.items()],
    }
    if b.calls is not None:
        out["calls"] = {"rows": b.calls.rows, "columns": {n: _plain(d) for n, d in b.calls.columns.items()}}
    if b.hook:
        out["hook"] = dict(b.hook)
    return out


def vectors() -> list[tuple[str, bytes]]:
    f = np.array
    return [
        ("empty_inference", encode_batch("inference", [])),
        (
            "numeric_features_with_nan",
            encode_batch(
                "inference",
                [
                    Column("age", "feature", f([31.0, np.nan, 58.5])),
                    Column("visits", "feature", f([1, 0, 7], dtype=np.int64)),
                    Column("premium", "feature", f([True, False, True])),
                    Column("prediction", "prediction", f([0, 1, 1], dtype=np.int64)),
                ],
            ),
        ),
        (
            "strings_probabilities_ids_calls_hook",
            encode_batch(
                "inference",
                [
                    Column("plan", "feature", ["basic", None, "pro"]),
                    Column("income", "feature", f([1.0, -2.5, np.inf], dtype=np.float32)),
                    Column("prediction", "prediction", ["churn", "stay", "stay"]),
                    Column("proba[churn]", "probability", f([0.9, 0.2, 0.4]), cls="churn"),
                    Column("proba[stay]", "probability", f([0.1, 0.8, 0.6]), cls="stay"),
                    Column("id", "id", ["r1", "r2", "r3"]),
                ],
                calls={
                    "method": ["predict_proba", "predict_proba"],
                    "start_ns": [1_700_000_000_000_000_000, 1_700_000_000_500_000_000],
                    "duration_s": [0.0005, 0.0007],
                    "rows": [1, 2],
                    "captured": [1, 2],
                    "error_type": [None, None],
                    "trace_id": ["0af7651916cd43dd8448eb211c80319c", None],
                },
                hook={"instance": "6f1c2b", "pid": 4242, "dropped_rows": 0, "queued_rows": 12},
            ),
        ),
        (
            "failed_call_no_rows",
            encode_batch(
                "inference",
                [],
                calls={"method": ["predict"], "start_ns": [1], "duration_s": [0.001], "rows": [5],
                       "captured": [0], "error_type": ["ValueError"], "trace_id": [None]},
                hook={"instance": "6f1c2b", "pid": 4242, "dropped_rows": 17},
            ),
        ),
        ("labels", encode_batch("labels", [Column("id", "id", ["r1", "r3"]), Column("label", "label", ["churn", "stay"])])),
        (
            "reference",
            encode_batch(
                "reference",
                [Column("x0", "feature", f([0.5, 1.5, 2.5, 3.5])), Column("label", "label", f([0, 1, 0, 1], dtype=np.int8))],
            ),
        ),
    ]


def malformed() -> list[tuple[str, bytes, str]]:
    good = dict(v=1, kind="inference", rows=2, columns=[dict(name="x", role="feature", type="f8", data=b"\0" * 16)])

    def pack(**changes):
        body = dict(good)
        body.update(changes)
        return msgpack.packb(body, use_bin_type=True)

    def col(**changes):
        c = dict(good["columns"][0])
        c.update(changes)
        return pack(columns=[c])

    valid = pack()
    return [
        ("empty", b"", "empty body"),
        ("random_bytes", bytes.fromhex("c1c1c1c1"), "not valid msgpack"),
        ("truncated", valid[:-5], "not valid msgpack"),
        ("trailing_bytes", valid + b"\x00", "trailing bytes"),
        ("not_a_map", msgpack.packb([1, 2, 3]), "expected a msgpack map"),
        ("unknown_version", pack(v=2), "unknown schema version 2"),
        ("missing_version", msgpack.packb({"kind": "inference", "rows": 0, "columns": []}), "missing key 'v'"),
        ("bad_kind", pack(kind="training"), "body.kind"),
        ("rows_wrong_type", pack(rows="2"), "body.rows: expected int"),
        ("negative_rows", pack(rows=-1), "outside 0.."),
        ("too_many_rows", pack(rows=10**9), "outside 0.."),
        ("column_length_mismatch", pack(rows=3), "expected 3 x 8"),
        ("bad_role", col(role="target"), ".role"),
        ("bad_type", col(type="f16"), ".type"),
        ("numeric_as_array", col(data=[1.0, 2.0]), "needs bin"),
        ("string_as_bin", col(type="str", data=b"ab"), "needs an array"),
        ("string_cell_wrong_type", col(type="str", data=["a", 3]), "expected str or nil"),
        ("empty_name", col(name=""), "outside 1..256"),
        ("long_name", col(name="n" * 257), "outside 1..256"),
        ("long_string", col(type="str", data=["a", "s" * 4097]), "longer than 4096"),
        ("duplicate_name", pack(columns=[good["columns"][0], good["columns"][0]]), "duplicate column name"),
        ("too_many_columns", pack(rows=0, columns=[dict(name=f"c{i}", role="feature", type="f8", data=b"") for i in range(2049)]),
         "exceed the limit of 2048"),
        ("unknown_key", pack(extra=1), "unknown keys"),
        ("extension_type", msgpack.packb(msgpack.ExtType(5, b"xx")), "extension types are not allowed"),
        ("invalid_utf8", bytes.fromhex("81a2") + b"\xff\xfe" + bytes.fromhex("01"), "invalid UTF-8"),
        ("bad_bool", col(type="bool", data=b"\x02\x00", ), "must be 0 or 1"),
        ("bad_call_column", pack(calls={"rows": 1, "columns": [dict(name="latency", role="call", type="f8", data=b"\0" * 8)]}),
         "unknown call column"),
        ("bad_call_type", pack(calls={"rows": 1, "columns": [dict(name="rows", role="call", type="f8", data=b"\0" * 8)]}),
         "expected 'i8'"),
        ("negative_call_rows", pack(calls={"rows": 1, "columns": [dict(name="rows", role="call", type="i8",
                                                                       data=(-5).to_bytes(8, "little", signed=True))]}),
         "body.calls.rows: values must be in 0.."),
        ("hook_not_map", pack(hook=[1]), "body.hook: expected map"),
        ("hook_negative_counter", pack(hook={"dropped_rows": -1}), "outside 0..2^63-1"),
        ("deep_nesting", b"\x91" * 100_000, "not valid msgpack"),
        ("huge_declared_bin", bytes.fromhex("c6ffffffff") + b"x", "not valid msgpack"),
        ("huge_declared_array", bytes.fromhex("ddffffffff"), "not valid msgpack"),
    ]


def checked_malformed(cases, decode, error_type) -> list[dict]:
    """The malformed cases as written to the vector file, each first shown to fail ``decode`` with
    ``error_type`` whose reason contains the expected text (shared with generate_window.py)."""
    bad = []
    for name, body, error in cases:
        try:
            decode(body)
        except error_type as exc:
            if error not in exc.reason:
                raise SystemExit(f"{name}: error {exc.reason!r} does not contain {error!r}")
        else:
            raise SystemExit(f"{name}: decoded without error")
        bad.append({"name": name, "hex": body.hex(), "error": error})
    return bad


def main() -> None:
    good = [{"name": n, "hex": body.hex(), "expected": expected_form(body)} for n, body in vectors()]
    bad = checked_malformed(malformed(), decode_batch, BatchError)
    (HERE / "vectors.json").write_text(json.dumps(good, indent=1) + "\n")
    (HERE / "malformed.json").write_text(json.dumps(bad, indent=1) + "\n")
    print(f"wrote {len(good)} vectors and {len(bad)} malformed cases")


if __name__ == "__main__":
    main()
