"""What a client learns when an upgrade fails (wsplugd(8), "The opening
handshake"): the discovery document at /.well-known/wsplugd on the
WebSocket listener, and the Retry-After hint on every 503 (a retry slot:
see test_restart.py).

A browser's WebSocket API hides the status of a refused handshake; these
two answers are what the shipped client (clients/js) reads with fetch()
instead, so they must be readable from another origin (CORS) and must say
exactly what the documentation promises.
"""

import asyncio
import json
import urllib.error
import urllib.request

from harness import SLOW, ws_connect
from rawws import Raw


def get(port, path, headers=None, method="GET"):
    """(status, headers, body) of a plain HTTP request, as fetch() sends
    one: no upgrade headers."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10 * SLOW) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_discovery_document_names_the_endpoint(wsplugd):
    d = wsplugd(server={"path": "/live/socket"})
    mark = d.mark()
    status, headers, body = get(d.port, "/.well-known/wsplugd?v=1",
                                {"Origin": "https://app.example"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Cache-Control"] == "no-cache"
    doc = json.loads(body)
    assert doc["service"] == "wsplugd"
    assert doc["endpoint"] == "/live/socket"
    assert doc["protocol"] == 1
    assert doc["backoff"] == {"base_ms": 1000, "cap_ms": 30000,
                              "jitter": "full"}
    assert doc["retry_after_s"] == 5
    assert doc["endpoints"] == ["/live/socket"] and doc["gone"] == []
    ev = d.wait_for("http.wellknown", start=mark)
    assert ev["status"] == "200" and ev["ip"] == "127.0.0.1"
    # Answered, not refused: no ws.refuse, no refusal counted.
    assert d.find_all("ws.refuse") == []

    # HEAD: the same head, no body.
    status, headers, body = get(d.port, "/.well-known/wsplugd",
                                method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) > 0

    # The endpoint itself still refuses a plain GET, and other paths,
    # other methods on the document's path, are still 404.
    assert get(d.port, "/live/socket")[0] == 400
    assert get(d.port, "/ws")[0] == 404
    assert get(d.port, "/.well-known/wsplugd", method="POST")[0] == 404
    assert get(d.port, "/.well-known/wsplugd/")[0] == 404


def test_discovery_document_refuses_a_refused_origin(wsplugd):
    d = wsplugd(server={"origins": "https://good.example"})
    status, headers, body = get(d.port, "/.well-known/wsplugd",
                                {"Origin": "https://evil.example"})
    assert status == 403
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(body) == {"error": "origin",
                                "detail": "origin not allowed"}
    status, _, body = get(d.port, "/.well-known/wsplugd",
                          {"Origin": "https://good.example"})
    assert status == 200 and json.loads(body)["endpoint"] == "/ws"
    assert [e["status"] for e in d.wait_count("http.wellknown", 2)] == \
        ["403", "200"]


def test_503_carries_retry_after_readable_cross_origin(wsplugd):
    d = wsplugd(server={"max_connections": 1})

    async def visit():
        async with ws_connect(d.url) as a:
            await a.recv()
            # The upgrade is refused with the hint...
            with Raw(d.port) as r:
                r.request()
                status, headers, _ = r.response()
                assert r.expect_eof() == b""
            # ... and so is the probe a page makes with fetch().
            probe = await asyncio.to_thread(get, d.port,
                                            "/.well-known/wsplugd")
            return status, headers, probe

    status, headers, (pstatus, pheaders, _) = asyncio.run(visit())
    assert status == 503
    # The first refusal's slot is a second away; the next ones follow at
    # the accept rate, so a quick second refusal may round up to 2.
    assert headers["retry-after"] == "1"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-expose-headers"] == "Retry-After"
    assert pstatus == 503
    assert pheaders["Retry-After"] in ("1", "2")
    d.wait_count("ws.refuse", 2, status=503, reason="max_connections")
    # Other refusals carry no hint: retrying them cannot help.
    with Raw(d.port) as r:
        r.request(path="/nope")
        status, headers, _ = r.response()
    assert status == 404 and "retry-after" not in headers

