"""Check 10: data-derived attribute values cannot explode the exported series.

One ``driftcar sidecar`` process (default caps: 500 features per model, 50 categories per
feature, 100 model versions) receives ``CARDINALITY`` (50,000) distinct values of one
categorical feature and as many distinct model names, and ``FEATURE_NAMES`` distinct
feature names (10,000 in CI, 50,000 long; spread over models of 2,000 columns, the
per-batch column limit being 2,048). Read back
from its Prometheus endpoint: series stay at their caps plus one overflow series each,
counts add up exactly to the rows sent, refused model versions are counted, and RSS is flat
once the caps are reached. (The same caps in-process, with hypothesis:
tests/unit/telemetry/test_state_and_caps.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from driftcar.sidecar.config import SidecarConfig
from driftcar.wire import Column, encode_batch
from driftcar.wire import otlp
from tests.reliability.harness import MiB, RawGrpc, Sidecar, metric_sum
from tests.reliability.sizes import size
from tests.support.waiting import wait_until
from tests.unit.sidecar.batches import record, request

DISTINCT = size("CARDINALITY")
CAPS = SidecarConfig()
COLUMNS = 2_000
REFERENCE_ROWS = 200
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def sidecar(tmp_path):
    """A fresh sidecar per check, so one check's state does not blur another's memory figures."""
    with Sidecar(tmp_path, "--export", "none", "--window", "1s", "--live-reference-rows", str(REFERENCE_ROWS)) \
            as process:
        client = RawGrpc(process.grpc_target)
        process.client = client
        yield process
        client.close()


def send(sidecar, body: bytes, model: str) -> None:
    reply = sidecar.client.send(request(record(body, model=model)).SerializeToString(), timeout=30)
    assert reply.code == "OK", reply


def series(samples, name: str, model: str, label: str) -> dict[str, float]:
    return {l[label]: v for n, l, v in samples if n == name and l.get("model_name") == model and label in l}


def test_distinct_category_values(sidecar):
    rng = np.random.default_rng(1)
    reference = [f"c{i}" for i in rng.integers(0, 30, REFERENCE_ROWS)]
    send(sidecar, encode_batch("inference", [Column("city", "feature", reference)]), "cats")
    sent = 0
    for start in range(0, DISTINCT, 5_000):
        values = [f"c{(i // 10) % 30}" if i % 10 == 0 else f"v{i}" for i in range(start, min(DISTINCT, start + 5_000))]
        send(sidecar, encode_batch("inference", [Column("city", "feature", values)]), "cats")
        sent += len(values)
    name = "driftcar_feature_category_total"

    def all_counted():
        got = series(sidecar.metrics(), name, "cats", "category")
        return sum(got.values()) == sent and got

    got = wait_until(all_counted, 60, what=f"{sent} category rows in {name}")
    print(f"\ncategories: {DISTINCT} distinct values -> {len(got)} series (cap {CAPS.max_categories}), "
          f"sum {sum(got.values()):.0f}")
    assert len(got) <= CAPS.max_categories + 1 and "__other__" in got
    assert got["__other__"] == sent - sent // 10  # the reference's 30 categories keep their own series
    assert len(got) == 31


def test_distinct_feature_names(sidecar):
    models = max(1, size("FEATURE_NAMES") // COLUMNS)
    rng = np.random.default_rng(2)
    rss = []
    for m in range(models):
        names = [f"m{m}_f{i}" for i in range(COLUMNS)]
        for rows in (REFERENCE_ROWS, 50):  # the first batch becomes the live reference, the second is compared
            columns = [Column(n, "feature", rng.normal(size=rows)) for n in names]
            send(sidecar, encode_batch("inference", columns), f"wide{m}")
        rss.append(sidecar.rss())
    name = "driftcar_feature_value_count"

    def exported():
        samples = sidecar.metrics()
        per_model = {m: series(samples, name, f"wide{m}", "feature_name") for m in range(models)}
        return all(sum(v.values()) == 50 * COLUMNS for v in per_model.values()) and per_model

    per_model = wait_until(exported, 120, what="every wide model's feature histograms")
    caps = {m: len(v) for m, v in per_model.items()}
    rss.append(sidecar.rss())
    print(f"\nfeature names: {models * COLUMNS} distinct over {models} models -> at most {max(caps.values())} "
          f"series per model (cap {CAPS.max_features}); RSS after each model's batches, then after evaluation: "
          f"{[round(r / MiB) for r in rss]} MiB")
    for m, got in per_model.items():
        assert len(got) <= CAPS.max_features + 1, (m, len(got))
        assert sum(got.values()) == 50 * COLUMNS  # every row of every feature, capped ones in the overflow
        assert any(f.startswith("__") for f in got)  # the overflow series


def test_distinct_model_names(sidecar):
    rejected_before = metric_sum(sidecar.metrics(), "driftcar_receiver_batches_total", outcome="rejected")
    existing = len(sidecar.models())
    body = encode_batch("inference", [Column("x", "feature", np.ones(1))])
    refused = 0
    rss = []
    for start in range(0, DISTINCT, 500):
        records = [otlp.batch_log_record(body, model_name=f"model-{i}", model_version="1", kind="inference", rows=1)
                   for i in range(start, min(DISTINCT, start + 500))]
        reply = sidecar.client.send(otlp.export_request(records, {"service.name": "s"}).SerializeToString(),
                                    timeout=30)
        assert reply.code in ("OK", "INVALID_ARGUMENT"), reply  # partial success, or all refused with a reason
        if reply.code == "OK":
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

            refused += ExportLogsServiceResponse.FromString(reply.body).partial_success.rejected_log_records
        else:
            assert "model cap" in reply.message
            refused += len(records)
        rss.append(sidecar.rss())
    admitted = CAPS.max_models - existing
    samples = sidecar.metrics()
    models = {l["model_name"] for n, l, v in samples if "model_name" in l}
    rejected = metric_sum(samples, "driftcar_receiver_batches_total", outcome="rejected") - rejected_before
    half = len(rss) // 2
    print(f"\nmodel names: {DISTINCT} distinct -> {len(sidecar.models())} model versions kept (cap {CAPS.max_models}), "
          f"{refused} batches refused and counted; RSS {rss[half] / MiB:.0f} -> {rss[-1] / MiB:.0f} MiB over the "
          f"second half")
    assert refused == DISTINCT - admitted and rejected == refused
    assert len(sidecar.models()) == CAPS.max_models
    assert len(models) <= CAPS.max_models
    # flat once capped: the allocator still settles during the first ~100,000 refusals (then
    # +2 MiB over 500,000 more, measured with RELIABILITY_CARDINALITY=1000000), hence 10 MiB here
    assert rss[-1] - rss[half] < 10 * MiB, [round(r / MiB, 1) for r in rss]
