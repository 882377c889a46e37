"""The churn model over HTTP (aiohttp), instrumented with driftcar.

    python -m examples.sklearn_http.server --port 8080 [--endpoint http://127.0.0.1:14317]

Routes:
- ``POST /predict`` ``{"rows": [{"tenure_months": 3, "monthly_charges": 80, ...}, ...]}`` ->
  ``{"ids": ["<request id>-0", ...], "predictions": [0, 1, ...]}``: one id per row, so labels
  can be joined later.
- ``POST /labels`` ``{"ids": [...], "labels": [...]}``: the ground truth, whenever it is known
  (minutes or days later); driftcar joins it to the predictions by id and reports accuracy etc.
- ``GET /healthz``.

The hook is one line (``driftcar.instrument``); the training data goes to driftcar as the
reference profile (``set_reference``) so drift is measured against what the model learned from.
The hook never blocks or raises into the request: if driftcar is down, rows are dropped and counted.
"""

from __future__ import annotations

import argparse
import os
import uuid

import numpy as np
from aiohttp import web

import driftcar
from examples.sklearn_http.data import FEATURES, frame, train

__all__ = ["make_app", "MONITOR", "main"]

MONITOR = web.AppKey("monitor", object)
MODEL = web.AppKey("model", object)
MAX_ROWS = 1000  # per request: bad input gets a 400, never an unbounded allocation


def make_app(endpoint: str | None = None, *, name: str = "churn", version: str = "1", seed: int = 0,
             **hook_options) -> web.Application:
    """The aiohttp application; the model is trained and instrumented on start-up."""
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/predict", predict)
    app.router.add_post("/labels", labels)
    app.router.add_get("/healthz", healthz)

    async def model_ctx(app: web.Application):
        model, X_train, y_train = train(seed=seed)
        monitor = driftcar.instrument(model, name=name, version=version, endpoint=endpoint, **hook_options)
        monitor.set_reference(X_train, y_train, predictions=model.predict(X_train))
        app[MODEL], app[MONITOR] = model, monitor
        yield
        monitor.shutdown(timeout=5.0)

    app.cleanup_ctx.append(model_ctx)
    return app


def _frame(rows):
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        raise web.HTTPBadRequest(text=f'"rows" must be a list of 1..{MAX_ROWS} objects\n')
    try:
        return frame(np.array([[float(row[f]) for f in FEATURES] for row in rows], dtype=np.float64))
    except (KeyError, TypeError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"each row needs numeric {', '.join(FEATURES)} ({exc!r})\n") from None


async def predict(request: web.Request) -> web.Response:
    body = await request.json()
    X = _frame(body.get("rows") if isinstance(body, dict) else None)
    request_id = uuid.uuid4().hex
    ids = [f"{request_id}-{i}" for i in range(len(X))]
    monitor = request.app[MONITOR]
    with monitor.ids(ids):  # the hook attaches these ids to the captured rows
        y = request.app[MODEL].predict(X)
    return web.json_response({"ids": ids, "predictions": [int(v) for v in y]})


async def labels(request: web.Request) -> web.Response:
    body = await request.json()
    ids, ys = (body.get("ids"), body.get("labels")) if isinstance(body, dict) else (None, None)
    if not isinstance(ids, list) or not isinstance(ys, list) or not ids or len(ids) != len(ys) or len(ids) > 100_000:
        raise web.HTTPBadRequest(text='"ids" and "labels" must be lists of equal length (1..100000)\n')
    request.app[MONITOR].log_labels([str(i) for i in ids], [int(v) for v in ys])
    return web.json_response({"accepted": len(ids)})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def setup_tracing() -> None:
    """Export the app's spans (the hook's predict spans included) when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    driftcar's drift events then carry trace ids of sampled calls, which Grafana opens in Tempo.
    """
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create())  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="churn model over HTTP, monitored by driftcar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--endpoint", default=None, help="driftcar sidecar or collector (default $DRIFTCAR_ENDPOINT)")
    args = parser.parse_args(argv)
    setup_tracing()
    web.run_app(make_app(args.endpoint), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
