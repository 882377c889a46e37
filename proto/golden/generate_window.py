"""Regenerate the ``driftcar.window`` vectors (run only when the contract changes on purpose).

    python proto/golden/generate_window.py

Writes ``window_vectors.json`` (body hex + the decoded form, sketch and reference
inflated as hex, so another implementation can check both directions) and
``window_malformed.json`` (body hex + a fragment of the error the decoder gives).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
import zlib
from pathlib import Path

import msgpack
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "agent"))

from driftcar.stats import Profile, profile  # noqa: E402
from driftcar.wire.window import WindowError, WindowRecord, decode_window, encode_window  # noqa: E402
from generate import checked_malformed  # noqa: E402  (this folder: the batch vectors' generator)

START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
END = START + 60_000_000_000
TRACE = "0af7651916cd43dd8448eb211c80319c"


def tiny_profile() -> Profile:
    """A small, deterministic reference (4 coarse / 8 fine bins, one categorical feature)."""
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():  # small on purpose: the vectors stay readable
        warnings.simplefilter("ignore")
        prof = profile({"age": rng.normal(40, 10, 200), "plan": rng.choice(["basic", "pro"], 200)},
                       bins=4, fine_bins=8, multivariate=False)
    return Profile.from_bytes(_with_created(prof.to_bytes()))


def _with_created(data: bytes) -> bytes:
    # the creation time is the only non-deterministic part of a profile: pin it
    prof = Profile.from_bytes(data)
    prof.created = 0.0
    return prof.to_bytes()


def form(rec: WindowRecord) -> dict:
    """The decoded record as JSON (bytes as hex)."""
    return {
        "model": rec.model, "version": rec.version, "replica": rec.replica,
        "start": rec.start_ns, "end": rec.end_ns, "rows": rec.rows, "profile": rec.profile,
        "sketch_hex": None if rec.sketch is None else rec.sketch.hex(),
        "reference_hex": None if rec.reference is None else rec.reference.hex(),
        "y_true": rec.y_true, "y_pred": rec.y_pred, "proba": [rec.proba_sum, rec.proba_n],
        "calls": [list(c) for c in rec.calls], "durations": [[m, c, s] for m, c, s in rec.durations],
        "traces": rec.trace_ids,
    }


def vectors() -> list[tuple[str, WindowRecord]]:
    prof = tiny_profile()
    window = prof.new_window()
    window.update({"age": np.array([35.0, 41.5, np.nan, 80.0]), "plan": ["pro", "basic", None, "gold"],
                   "pred": np.array([1, 0, 0, 1])}, {"age": "feature", "plan": "feature", "pred": "prediction"})
    counts = [0] * 20
    counts[5], counts[6] = 3, 1
    full = WindowRecord(model="churn", version="3", replica="churn-7d9f-abcde", start_ns=START, end_ns=END, rows=4,
                        profile=prof.fingerprint, sketch=window.to_bytes(), reference=prof.to_bytes(),
                        y_true=["stay", "churn"], y_pred=["stay", "stay"], proba_sum=3.1, proba_n=4,
                        calls=[("predict", None, 3), ("predict", "ValueError", 1)],
                        durations=[("predict", counts, 0.0123)], trace_ids=[TRACE])
    sketch_only = WindowRecord(model="churn", version="3", replica="churn-7d9f-fghij", start_ns=START, end_ns=END,
                               rows=4, profile=prof.fingerprint, sketch=window.to_bytes())
    labels_only = WindowRecord(model="fraud", version="2024-05", replica="10.0.3.7", start_ns=START, end_ns=END,
                               rows=0, y_true=[1, 0, 1], y_pred=[1, 1, 1])
    return [("full_window_with_reference", full), ("sketch_only", sketch_only), ("labels_only_no_reference", labels_only)]


def malformed() -> list[tuple[str, bytes, str]]:
    sketch = b"DCWIND" + b"\x00" * 40
    good = {"v": 1, "model": "m", "version": "1", "replica": "r", "start": 0, "end": 60, "rows": 1, "profile": "abcd",
            "sketch": zlib.compress(sketch), "sketch_len": len(sketch), "reference": None, "labels": None,
            "proba": [0.0, 0], "calls": [], "durations": [], "traces": []}

    def pack(**changes):
        body = dict(good)
        for key, value in changes.items():
            if value is ...:
                body.pop(key)
            else:
                body[key] = value
        return msgpack.packb(body, use_bin_type=True)

    return [
        ("empty", b"", "empty body"),
        ("random_bytes", bytes.fromhex("c1c1c1c1"), "not valid msgpack"),
        ("truncated", pack()[:-3], "not valid msgpack"),
        ("trailing_bytes", pack() + b"\x00", "not valid msgpack"),
        ("not_a_map", msgpack.packb([1, 2]), "must be a msgpack map"),
        ("unknown_version", pack(v=2), "schema version 2 is not supported"),
        ("missing_version", pack(v=...), "schema version None is not supported"),
        ("unknown_key", pack(extra=1), "unknown keys"),
        ("empty_model", pack(model=""), "model must be a string of 1..256"),
        ("long_replica", pack(replica="r" * 257), "replica must be a string of 1..256"),
        ("end_before_start", pack(start=60, end=60), "must be after start"),
        ("negative_rows", pack(rows=-1), "rows must be an integer"),
        ("bool_rows", pack(rows=True), "rows must be an integer"),
        ("sketch_without_profile", pack(profile=None), "needs the profile fingerprint"),
        ("sketch_len_missing", pack(sketch_len=...), "sketch_len must be an integer"),
        ("sketch_len_lies", pack(sketch_len=len(sketch) + 1), "declared"),
        ("sketch_not_deflate", pack(sketch=b"not deflate"), "not valid deflate data"),
        ("inflate_bomb", pack(sketch=zlib.compress(b"\x00" * (1 << 20)), sketch_len=1 << 27),
         "sketch_len must be an integer in [1, 67108864]"),
        ("inflates_past_declared", pack(sketch=zlib.compress(b"\x00" * 100_000), sketch_len=1000), "declared"),
        ("sketch_is_str", pack(sketch="abc"), "sketch must be nil or bytes"),
        ("labels_length_mismatch", pack(labels={"true": [1, 2], "pred": [1]}), "same length"),
        ("labels_nested", pack(labels={"true": [[1]], "pred": [1]}), "labels hold scalars"),
        ("labels_keys", pack(labels={"y": [1]}), "keys 'true' and 'pred'"),
        ("proba_shape", pack(proba=[1.0]), "proba must be [sum"),
        ("proba_nan", pack(proba=[float("nan"), 3]), "must be finite"),
        ("calls_entry", pack(calls=[["predict", None]]), "calls entries must be"),
        ("calls_negative", pack(calls=[["predict", None, -1]]), "calls entries must be"),
        ("durations_buckets", pack(durations=[["predict", [1, 2, 3], 0.5]]), "20 bucket counts"),
        ("bad_trace", pack(traces=["abc"]), "trace ids of 32 hex"),
        ("too_many_traces", pack(traces=[TRACE] * 65), "at most 64 trace ids"),
        ("long_label_string", pack(labels={"true": ["s" * 4097], "pred": ["a"]}), "not valid msgpack"),
        ("extension_type", msgpack.packb(msgpack.ExtType(5, b"xx")), "max_ext_len"),
        ("invalid_utf8", bytes.fromhex("81a2") + b"\xff\xfe" + bytes.fromhex("01"), "not valid msgpack"),
        ("deep_nesting", b"\x91" * 100_000, "not valid msgpack"),
        ("huge_declared_bin", bytes.fromhex("c6ffffffff") + b"x", "not valid msgpack"),
        ("huge_declared_array", bytes.fromhex("ddffffffff"), "not valid msgpack"),
        ("huge_declared_map", bytes.fromhex("dfffffffff"), "not valid msgpack"),
    ]


def main() -> None:
    good = []
    for name, rec in vectors():
        body = encode_window(rec)
        decoded = decode_window(body)
        good.append({"name": name, "hex": body.hex(), "sha256": hashlib.sha256(body).hexdigest(),
                     "expected": form(decoded)})
    bad = checked_malformed(malformed(), decode_window, WindowError)
    (HERE / "window_vectors.json").write_text(json.dumps(good, indent=1) + "\n")
    (HERE / "window_malformed.json").write_text(json.dumps(bad, indent=1) + "\n")
    print(f"wrote {len(good)} window vectors and {len(bad)} malformed cases")


if __name__ == "__main__":
    main()
