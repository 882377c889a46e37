"""The page route on a real aiohttp app (in-process, loopback): the bearer token guards it like
the JSON API, ``?token=`` trades the token for an HttpOnly cookie, strict security headers."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from driftcar.sidecar.api import Api
from driftcar.sidecar.config import load_config
from driftcar.sidecar.security import TokenAuth
from driftcar.sidecar.state import StateStore
from driftcar.view.live import COOKIE

from tests.unit.sidecar.fake_telemetry import FakeTelemetry

TOKEN = "s3cret-" + "z" * 20


def _app(token):
    tel = FakeTelemetry()
    config = load_config(env={}, flags={"live_reference_rows": "0"})
    store = StateStore(config.store_config(), tel)
    app = web.Application()
    Api(store, tel, TokenAuth(token), config.api_config(), lambda: True).add_routes(app)
    return app


async def _session(token, steps):
    async with TestClient(TestServer(_app(token), host="127.0.0.1")) as client:
        return await steps(client)


def test_without_a_token_configured_the_page_is_served():
    async def steps(client):
        resp = await client.get("/")
        text = await resp.text()
        part = await (await client.get("/?part=body")).text()
        return resp, text, part

    resp, text, part = asyncio.run(_session(None, steps))
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "no model has sent data yet" in text and text.startswith("<!DOCTYPE html>")
    assert not part.startswith("<!DOCTYPE") and "no model has sent data yet" in part
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert resp.headers["Cache-Control"] == "no-store"


def test_token_by_header_or_by_cookie_after_the_token_link():
    async def steps(client):
        out = {"anonymous": (await client.get("/")).status,
               "wrong": (await client.get("/?token=nope", allow_redirects=False)).status,
               "header": (await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status,
               "api without header": (await client.get("/v1/models")).status}
        login = await client.get(f"/?token={TOKEN}", allow_redirects=False)
        out["login"] = login.status
        out["location"] = login.headers["Location"]
        out["set-cookie"] = login.headers["Set-Cookie"]
        out["cookie"] = (await client.get("/")).status  # the client's jar sends the cookie back
        out["cookie part"] = (await client.get("/?part=body")).status
        out["api with cookie"] = (await client.get("/v1/models")).status  # the cookie is for the page only
        return out

    out = asyncio.run(_session(TOKEN, steps))
    assert out["anonymous"] == 401 and out["wrong"] == 401 and out["header"] == 200
    assert out["login"] == 303 and out["location"] == "/"
    assert f"{COOKIE}=" in out["set-cookie"] and "HttpOnly" in out["set-cookie"]
    assert "SameSite=Strict" in out["set-cookie"]
    assert out["cookie"] == 200 and out["cookie part"] == 200
    assert out["api without header"] == 401 and out["api with cookie"] == 401


def test_the_page_is_compressed_when_the_browser_accepts_it():
    async def steps(client):
        resp = await client.get("/", headers={"Accept-Encoding": "gzip"})
        return resp.headers.get("Content-Encoding"), await resp.text()

    encoding, text = asyncio.run(_session(None, steps))
    assert encoding == "gzip" and text.startswith("<!DOCTYPE html>")
