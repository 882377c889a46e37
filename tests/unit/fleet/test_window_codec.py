"""The driftcar.window body: golden vectors both ways, malformed cases, limits, fuzzing."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from driftcar.sidecar.telemetry.telemetry import DURATION_BOUNDS_S as TELEMETRY_BOUNDS
from driftcar.stats import Profile, WindowSketch
from driftcar.wire.window import (DURATION_BOUNDS_S, WindowError, WindowLimits, WindowRecord, decode_window,
                                  encode_window)

GOLDEN = Path(__file__).resolve().parents[3] / "proto" / "golden"
VECTORS = json.loads((GOLDEN / "window_vectors.json").read_text())
MALFORMED = json.loads((GOLDEN / "window_malformed.json").read_text())


def _record(e: dict) -> WindowRecord:
    return WindowRecord(
        model=e["model"], version=e["version"], replica=e["replica"], start_ns=e["start"], end_ns=e["end"],
        rows=e["rows"], profile=e["profile"],
        sketch=None if e["sketch_hex"] is None else bytes.fromhex(e["sketch_hex"]),
        reference=None if e["reference_hex"] is None else bytes.fromhex(e["reference_hex"]),
        y_true=e["y_true"], y_pred=e["y_pred"], proba_sum=e["proba"][0], proba_n=e["proba"][1],
        calls=[tuple(c) for c in e["calls"]], durations=[(m, c, s) for m, c, s in e["durations"]],
        trace_ids=e["traces"])


def _inflated(body: bytes) -> dict:
    """The body's map with the deflated fields inflated (deflate bytes may differ between zlib builds)."""
    raw = msgpack.unpackb(body, raw=False)
    for key in ("sketch", "reference"):
        if raw.get(key) is not None:
            raw[key] = zlib.decompress(raw[key])
    return raw


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_vector_decodes_to_expected_form(vector):
    rec = decode_window(bytes.fromhex(vector["hex"]))
    assert rec == _record(vector["expected"])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_vector_reencodes_to_the_same_body(vector):
    body = encode_window(_record(vector["expected"]))
    assert _inflated(body) == _inflated(bytes.fromhex(vector["hex"]))
    assert list(msgpack.unpackb(body, raw=False)) == list(msgpack.unpackb(bytes.fromhex(vector["hex"]), raw=False))


def test_golden_sketch_reads_back_against_its_reference():
    e = VECTORS[0]["expected"]
    prof = Profile.from_bytes(bytes.fromhex(e["reference_hex"]))
    assert prof.fingerprint == e["profile"]
    sketch = WindowSketch.from_bytes(bytes.fromhex(e["sketch_hex"]), prof)
    age, plan = sketch.feature("age"), sketch.feature("plan")
    assert (sketch.rows, age.n, age.missing, plan.missing, plan.category_counts["__other__"]) == (4, 3, 1, 1, 1)


@pytest.mark.parametrize("case", MALFORMED, ids=[c["name"] for c in MALFORMED])
def test_malformed_case_gets_documented_error(case):
    with pytest.raises(WindowError) as info:
        decode_window(bytes.fromhex(case["hex"]))
    assert case["error"] in info.value.reason


def test_limits_are_enforced_both_ways():
    rec = _record(VECTORS[0]["expected"])
    small = WindowLimits(max_body_bytes=256)
    with pytest.raises(WindowError, match="over the 256 byte limit"):
        decode_window(bytes.fromhex(VECTORS[0]["hex"]), small)
    with pytest.raises(WindowError, match="over the 256 byte limit"):
        encode_window(rec, small)  # the encoder never emits what a decoder would refuse
    rec.y_true, rec.y_pred = [1] * 11, [0] * 11
    with pytest.raises(WindowError, match="11 pairs are over the limit of 10"):
        decode_window(encode_window(rec), WindowLimits(max_labels=10))
    rec.y_true, rec.y_pred = [1] * 2000, [0] * 2000  # past every array cap: refused while unpacking
    with pytest.raises(WindowError, match="not valid msgpack"):
        decode_window(encode_window(rec), WindowLimits(max_labels=10))
    with pytest.raises(WindowError, match="sketch_len must be an integer in \\[1, 100\\]"):
        decode_window(bytes.fromhex(VECTORS[0]["hex"]), WindowLimits(max_sketch_bytes=100))
    with pytest.raises(ValueError, match="positive int"):
        WindowLimits(max_traces=0)


def test_duration_buckets_are_the_sidecar_histogram_bounds():
    assert list(DURATION_BOUNDS_S) == np.asarray(TELEMETRY_BOUNDS).tolist()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_corruption_is_a_window_error_never_a_crash(data):
    body = bytearray(bytes.fromhex(VECTORS[0]["hex"]))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(body)))
    try:
        decode_window(bytes(body[:cut]))
    except WindowError:
        pass
