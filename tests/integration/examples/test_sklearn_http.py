"""examples/sklearn_http against a real sidecar: the aiohttp server with the hook, traffic that
drifts halfway, labels posted back later by request id (real HTTP and gRPC over loopback)."""

from __future__ import annotations

import asyncio
import threading

import aiohttp

from examples.sklearn_http.client import run_traffic
from examples.sklearn_http.data import DRIFTED, FEATURES
from examples.sklearn_http.server import MONITOR, make_app
from tests.integration.examples.conftest import events, model_doc
from tests.support.waiting import free_port, wait_until


class ServerThread:
    """The example's aiohttp app served from its own loop thread (as ``web.run_app`` would)."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="example-server")
        self.runner = None

    def __enter__(self):
        from aiohttp import web

        async def start():
            self.runner = web.AppRunner(self.app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_drift_and_late_labels_reach_the_sidecar(sidecar):
    from opentelemetry.sdk.trace import TracerProvider

    # the app's own tracer provider (what setup_tracing() installs globally when exporting)
    app = make_app(sidecar.grpc_endpoint, name="churn", version="1", max_batch_age_s=0.2,
                   tracer_provider=TracerProvider())
    with ServerThread(app) as server:
        sent = asyncio.run(run_traffic(server.url, rate=25, batch=60, duration=7.0, drift_after=3.5,
                                       label_delay=0.3))
        assert sent.errors == [] and sent.requests > 100 and sent.labelled == sent.rows

        def drifted():
            doc = model_doc(sidecar, "churn")
            return doc if doc and set(DRIFTED) <= set(doc["drift_detected"]) else None

        doc = wait_until(drifted, timeout=20, what="drift on the drifted features")
        assert not set(doc["drift_detected"]) & (set(FEATURES) - set(DRIFTED)), doc["drift_detected"]
        assert set(doc["features"]) >= set(FEATURES), "features keep their names"
        # labels joined by request id -> quality figures
        doc = wait_until(lambda: (d := model_doc(sidecar, "churn")) and d["performance"].get("accuracy") is not None and d,
                         timeout=10, what="accuracy from joined labels")
        assert 0.5 < doc["performance"]["accuracy"] <= 1.0
        assert app[MONITOR].stats["dropped_rows"] == 0
        # drift events carry trace ids of sampled predict calls (dashboard: log line -> trace)
        detected = [e for e in events(sidecar) if e["event_name"] == "driftcar.drift.detected"
                    and e["attributes"]["feature.name"] in DRIFTED]
        trace_ids = {t for e in detected for t in e["attributes"]["driftcar.sample_trace_ids"]}
        assert trace_ids and all(len(t) == 32 and int(t, 16) for t in trace_ids)


def test_bad_requests_get_a_clear_400(sidecar):
    async def post(url, path, body):
        async with aiohttp.ClientSession() as session:
            async with session.post(url + path, json=body) as resp:
                return resp.status, await resp.text()

    with ServerThread(make_app(sidecar.grpc_endpoint)) as server:
        status, text = asyncio.run(post(server.url, "/predict", {"rows": [{"tenure_months": 1}]}))
        assert status == 400 and "monthly_charges" in text
        status, _ = asyncio.run(post(server.url, "/predict", {"rows": []}))
        assert status == 400
        status, _ = asyncio.run(post(server.url, "/labels", {"ids": ["a"], "labels": []}))
        assert status == 400
