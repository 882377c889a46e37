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

from driftcar.wire import BatchError, Column, decode_batch  # noqa: E402
from driftcar.wire import encode_batch as _encode_batch  # noqa: E402


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


def vectors(version: int) -> list[tuple[str, bytes]]:
    """The same batches for every schema version (v2 adds a dictionary-encoded one)."""
    f = np.array

    def encode_batch(*args, **kwargs) -> bytes:
        return _encode_batch(*args, version=version, **kwargs)

    extra = [] if version < 2 else [
        ("dictionary_strings", encode_batch(
            "inference",
            [Column("plan", "feature", ["basic", "pro", None, "basic", "basic", "pro"]),
             Column("id", "id", ["r1", "r2", "r3", "r4", "r5", "r6"])],  # distinct ids stay an array
            calls={"method": ["predict", "predict"], "rows": [3, 3], "captured": [3, 3]})),
    ]
    return extra + [
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


def malformed(version: int = 1) -> list[tuple[str, bytes, str]]:
    """The v1 cases (``version`` 1), or v2's own: its dictionary-encoded str columns."""
    if version == 2:
        return malformed_v2()
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
        ("unknown_version", pack(v=3), "unknown schema version 3"),
        ("dictionary_in_v1", col(type="str", data={"values": ["a"], "codes": b"\0" * 8}), "needs an array"),
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


def malformed_v2() -> list[tuple[str, bytes, str]]:
    codes = np.array([0, -1], dtype="<i4").tobytes()

    def dictionary(**changes):
        data = {"values": ["a"], "codes": codes}
        data.update(changes)
        data = {k: v for k, v in data.items() if v is not None}
        return msgpack.packb(dict(v=2, kind="inference", rows=2,
                                  columns=[dict(name="c", role="feature", type="str", data=data)]), use_bin_type=True)

    return [
        ("v2_unknown_dictionary_key", dictionary(extra=1), "unknown keys"),
        ("v2_missing_codes", dictionary(codes=None), "missing key 'codes'"),
        ("v2_values_not_array", dictionary(values="a"), ".values: expected list"),
        ("v2_value_not_str", dictionary(values=[1]), ".values[0]: expected str"),
        ("v2_value_nil", dictionary(values=[None]), ".values[0]: expected str"),
        ("v2_duplicate_values", dictionary(values=["a", "a"]), "values must be distinct"),
        ("v2_more_values_than_rows", dictionary(values=["a", "b", "c"]), "3 values for 2 rows"),
        ("v2_long_value", dictionary(values=["s" * 4097]), "longer than 4096"),
        ("v2_codes_not_bin", dictionary(codes=[0, 0]), ".codes: expected bytes"),
        ("v2_codes_length", dictionary(codes=codes[:4]), "4 bytes, expected 2 x 4"),
        ("v2_code_too_large", dictionary(codes=np.array([0, 1], dtype="<i4").tobytes()), "codes must be in -1..0"),
        ("v2_code_below_missing", dictionary(codes=np.array([0, -2], dtype="<i4").tobytes()), "codes must be in -1..0"),
        ("v2_numeric_as_dictionary", msgpack.packb(dict(v=2, kind="inference", rows=2, columns=[
            dict(name="x", role="feature", type="f8", data={"values": ["a"], "codes": codes})]), use_bin_type=True),
         "needs bin"),
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


#: schema version -> file name suffix (v1's files keep their names)
SUFFIX = {1: "", 2: "_v2"}


def main() -> None:
    for version, suffix in SUFFIX.items():
        good = [{"name": n, "hex": body.hex(), "expected": expected_form(body)} for n, body in vectors(version)]
        bad = checked_malformed(malformed(version), decode_batch, BatchError)
        (HERE / f"vectors{suffix}.json").write_text(json.dumps(good, indent=1) + "\n")
        (HERE / f"malformed{suffix}.json").write_text(json.dumps(bad, indent=1) + "\n")
        print(f"v{version}: wrote {len(good)} vectors and {len(bad)} malformed cases")


if __name__ == "__main__":
    main()
