"""The jwt plugin: tokens checked before the 101, users, expiry, refresh.

Tokens are made with PyJWT (Debian's python3-jwt) from keys the test
writes: an HMAC secret, an RSA and a P-256 key pair made with
cryptography.  Each bad token is tried from the query, a cookie and
Sec-WebSocket-Protocol, and must get 401 with its reason; good ones open
a connection whose user is the token's sub.
"""

import asyncio
import base64
import json
import os
import signal
import socket
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import SLOW, config, ws_connect
from test_admin import request

SECRET = b"s3cret-for-the-tests-0123456789abcdef"
ISS = "https://issuer.example"
AUD = "wsplugd-tests"


def pem_pair(key):
    priv = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


@pytest.fixture(scope="module")
def keys():
    return {"rsa": pem_pair(rsa.generate_private_key(65537, 2048)),
            "rsa2": pem_pair(rsa.generate_private_key(65537, 2048)),
            "ec": pem_pair(ec.generate_private_key(ec.SECP256R1()))}


def claims(**kw):
    now = int(time.time())
    c = {"sub": "alice", "iss": ISS, "aud": AUD, "exp": now + 3600,
         "iat": now, "channels": ["news", "user.{sub}", "room.*"]}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def hs(alg="HS256", key=SECRET, **kw):
    return pyjwt.encode(claims(**kw), key, algorithm=alg)


def start(wsplugd, tmp_path, pub=None, broadcast=False, **extra):
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    section = {"hmac_key": tmp_path / "secret", "issuer": ISS,
               "audience": AUD, "leeway": "1s", "claims": "channels role",
               **extra}
    if pub is not None:
        (tmp_path / "pub.pem").write_bytes(pub)
        section["public_key"] = tmp_path / "pub.pem"
    plugins = ["connection_established", "ping", "jwt"]
    sections = {"jwt": section}
    if broadcast:
        plugins.append("broadcast")
        sections["broadcast"] = {"channels_claim": "channels"}
    return wsplugd(config(plugins=plugins, plugin_sections=sections,
                          server={"subprotocols": "chat.v1"}))


def upgrade(d, token=None, where="query", timeout=10):
    """A raw handshake carrying token: (status, response text)."""
    target = "/ws"
    extra = ""
    if token is not None and where == "query":
        target += "?token=" + token
    elif token is not None and where == "cookie":
        extra = f"Cookie: theme=dark; token={token}; x=1\r\n"
    elif token is not None and where == "subprotocol":
        extra = f"Sec-WebSocket-Protocol: chat.v1, {token}\r\n"
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout * SLOW)
    try:
        s.sendall((f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n" + extra +
                   "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 101"):
            while chunk:
                chunk = s.recv(4096)
                data += chunk
        return int(data.split(b" ", 2)[1]), data.decode(errors="replace")
    finally:
        s.close()


WHERE = ("query", "cookie", "subprotocol")


def confused(pub_pem):
    """The algorithm-confusion attack: HS256 with the RSA public key as
    the HMAC secret, which a verifier that lets the token pick its key
    type would accept."""
    import hashlib
    import hmac
    signing = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(claims())
    sig = hmac.new(pub_pem, signing.encode(), hashlib.sha256).digest()
    return signing + "." + base64.urlsafe_b64encode(sig).rstrip(
        b"=").decode()


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(
        b"=").decode()


def test_valid_tokens_every_algorithm_every_place(wsplugd, tmp_path, keys):
    d = start(wsplugd, tmp_path, pub=keys["rsa"][1])
    toks = [hs("HS256"), hs("HS384"), hs("HS512"),
            pyjwt.encode(claims(), keys["rsa"][0], algorithm="RS256")]
    for tok in toks:
        for where in WHERE:
            status, text = upgrade(d, tok, where)
            assert status == 101, (where, text)
    d.wait_for("ws.open", user="alice")


def test_es256(wsplugd, tmp_path, keys):
    d = start(wsplugd, tmp_path, pub=keys["ec"][1])
    tok = pyjwt.encode(claims(sub="bob"), keys["ec"][0], algorithm="ES256")
    for where in WHERE:
        assert upgrade(d, tok, where)[0] == 101
    d.wait_for("ws.open", user="bob")
    # an RSA-signed token cannot pass against the EC key
    rs = pyjwt.encode(claims(), keys["rsa"][0], algorithm="RS256")
    assert upgrade(d, rs)[0] == 401


@pytest.mark.parametrize("name,token,reason", [
    ("expired", lambda k: hs(exp=int(time.time()) - 60), "token expired"),
    ("not yet valid", lambda k: hs(nbf=int(time.time()) + 600),
     "token not yet valid"),
    ("wrong issuer", lambda k: hs(iss="https://evil.example"),
     "wrong token issuer"),
    ("wrong audience", lambda k: hs(aud="someone-else"),
     "wrong token audience"),
    ("bad signature", lambda k: hs(key=b"not-the-secret-0123456789abcdef"),
     "bad token signature"),
    ("alg none", lambda k: b64({"alg": "none", "typ": "JWT"}) + "." +
     b64(claims()) + ".", "unsigned token (alg none)"),
    ("malformed", lambda k: "abc.def", "malformed token"),
    ("malformed header", lambda k: "e30x." + b64(claims()) + ".c2ln",
     "malformed token header"),
    ("RS256 by another key", lambda k: pyjwt.encode(
        claims(), k["rsa2"][0], algorithm="RS256"), "bad token signature"),
    ("HS256 keyed with the public PEM", lambda k: confused(k["rsa"][1]),
     "bad token signature"),
    ("HS256 not accepted", lambda k: hs(), None),
    ("no sub", lambda k: hs(sub=None), "token without a usable sub"),
    ("no exp", lambda k: hs(exp=None), "token without exp"),
])
def test_bad_tokens_refused_401(wsplugd, tmp_path, keys, name, token,
                                reason):
    if reason is None:  # algorithms limits what a token may choose
        d = start(wsplugd, tmp_path, pub=keys["rsa"][1], algorithms="RS256")
        reason = "token algorithm not accepted"
    else:
        d = start(wsplugd, tmp_path, pub=keys["rsa"][1])
    tok = token(keys)
    for where in WHERE:
        if where == "subprotocol" and tok.count(".") != 2:
            continue  # not token-shaped: not taken from the header at all
        status, text = upgrade(d, tok, where)
        assert status == 401, (name, where, text)
        assert reason in text, (name, where, text)
    d.wait_for("ws.refuse", status=401, reason="plugin", plugin="jwt",
               detail=reason)
    assert not d.find("ws.open")


def test_no_token_is_401(wsplugd, tmp_path):
    d = start(wsplugd, tmp_path)
    status, text = upgrade(d)
    assert status == 401 and "token required" in text


def test_leeway_admits_just_expired(wsplugd, tmp_path):
    d = start(wsplugd, tmp_path, leeway="120s")
    assert upgrade(d, hs(exp=int(time.time()) - 60))[0] == 101


def test_key_rotation_by_sighup(wsplugd, tmp_path, keys):
    d = start(wsplugd, tmp_path, pub=keys["rsa"][1])
    old = pyjwt.encode(claims(), keys["rsa"][0], algorithm="RS256")
    new = pyjwt.encode(claims(), keys["rsa2"][0], algorithm="RS256")
    assert upgrade(d, old)[0] == 101
    assert upgrade(d, new)[0] == 401
    (tmp_path / "pub.pem").write_bytes(keys["rsa2"][1])
    # until the reload, the key in use stays
    assert upgrade(d, new)[0] == 401
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for("reload", start=mark, result="ok")
    d.wait_for("plugin.log", start=mark, plugin="jwt", msg="keys reloaded")
    assert upgrade(d, new)[0] == 101
    assert upgrade(d, old)[0] == 401
    # a key file that no longer reads keeps the keys in use
    (tmp_path / "pub.pem").write_bytes(b"")
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for("reload", start=mark, result="ok")
    d.wait_for("plugin.log", start=mark, plugin="jwt", level="error")
    assert upgrade(d, new)[0] == 101


def test_user_attributes_and_connections(wsplugd, tmp_path):
    d = start(wsplugd, tmp_path)

    async def main():
        async with ws_connect(d.url + "?token=" + hs(sub="carol")) as ws:
            await ws.recv()
            _, _, body = request(d, "/connections")
            return json.loads(body)["connections"]
    conns = asyncio.run(main())
    assert conns[0]["user"] == "carol"
    d.wait_for("ws.open", user="carol")
    d.wait_for("ws.close", user="carol")


def test_expiry_warning_then_close_4001(wsplugd, tmp_path):
    d = start(wsplugd, tmp_path, leeway="0s", expiry_warning="1s")
    exp = int(time.time()) + 3

    async def main():
        async with ws_connect(d.url + "?token=" + hs(exp=exp)) as ws:
            assert json.loads(await ws.recv())["type"] == \
                "connection_established"
            warn = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
            t_warn = time.time()
            with pytest.raises(Exception):
                await asyncio.wait_for(ws.recv(), 10 * SLOW)
            return warn, t_warn, ws.close_code, ws.close_reason
    warn, t_warn, code, reason = asyncio.run(main())
    assert warn == {"type": "token_expiring", "expires_at": exp * 1000}
    assert t_warn <= exp - 0.5
    assert code == 4001 and reason == "token expired"
    d.wait_for("ws.close", code=4001, user="alice")


def test_refresh_before_expiry(wsplugd, tmp_path):
    # the refreshes must fit between the warning and the end, also when
    # the daemon runs under valgrind
    window = int(2 * SLOW)
    d = start(wsplugd, tmp_path, leeway="0s", expiry_warning=f"{window}s")
    exp = int(time.time()) + 2 + window

    async def main():
        async with ws_connect(d.url + "?token=" + hs(exp=exp)) as ws:
            await ws.recv()
            warn = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
            assert warn["type"] == "token_expiring"
            # someone else's token is no refresh
            await ws.send(json.dumps({"type": "refresh",
                                      "token": hs(sub="mallory")}))
            bad = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "refresh",
                                      "token": hs(exp=exp - 100)}))
            expired = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "refresh",
                                      "token": hs(exp=exp + 60)}))
            ok = json.loads(await ws.recv())
            # past the first token's end the connection stays open
            await asyncio.sleep(max(0, exp - time.time()) + 1.5)
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            pong = json.loads(await ws.recv())
            return bad, expired, ok, pong
    bad, expired, ok, pong = asyncio.run(main())
    assert bad["code"] == "invalid_token" and "same sub" in bad["message"]
    assert expired["code"] == "invalid_token" and \
        expired["message"] == "token expired"
    assert ok == {"type": "token_refreshed", "expires_at": (exp + 60) * 1000}
    assert pong["type"] == "pong" and pong["id"] == 7
    assert not d.find("ws.close", code=4001)


def test_broadcast_channels_by_claim(wsplugd, tmp_path):
    d = start(wsplugd, tmp_path, broadcast=True)

    async def main():
        async with ws_connect(d.url + "?token=" + hs(sub="dave")) as ws:
            await ws.recv()
            out = {}
            for ch in ("news", "user.dave", "user.erin", "room.42",
                       "secret"):
                await ws.send(json.dumps({"type": "subscribe",
                                          "channel": ch}))
                r = json.loads(await ws.recv())
                out[ch] = r["type"] if r["type"] != "error" else r["code"]
            await ws.send(json.dumps({"type": "publish", "channel": "secret",
                                      "data": 1, "id": 1}))
            out["publish secret"] = json.loads(await ws.recv())["code"]
            return out
    out = asyncio.run(main())
    assert out == {"news": "subscribed", "user.dave": "subscribed",
                   "user.erin": "forbidden_channel",
                   "room.42": "subscribed", "secret": "forbidden_channel",
                   "publish secret": "forbidden_channel"}


def test_token_inside_the_warning_window_is_told_at_once(wsplugd, tmp_path):
    d = start(wsplugd, tmp_path, expiry_warning="60s")
    exp = int(time.time()) + 30

    async def main():
        async with ws_connect(d.url + "?token=" + hs(exp=exp)) as ws:
            await ws.recv()
            return json.loads(await asyncio.wait_for(ws.recv(), 5 * SLOW))
    assert asyncio.run(main()) == {"type": "token_expiring",
                                   "expires_at": exp * 1000}


def jwk(pub_pem, kid):
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm
    key = serialization.load_pem_public_key(pub_pem)
    algo = RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else ECAlgorithm
    k = json.loads(algo.to_jwk(key))
    k["kid"] = kid
    return k


def test_jwks_keys_by_kid_and_rotation(wsplugd, tmp_path, keys):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "skipped"},
        jwk(keys["rsa"][1], "r1"), jwk(keys["ec"][1], "e1")]}))
    d = start(wsplugd, tmp_path, jwks=jwks)

    def tok(key, alg, kid=None):
        return pyjwt.encode(claims(), key, algorithm=alg,
                            headers={"kid": kid} if kid else None)
    assert upgrade(d, tok(keys["rsa"][0], "RS256", "r1"))[0] == 101
    assert upgrade(d, tok(keys["ec"][0], "ES256", "e1"))[0] == 101
    # without a kid every key of the type is tried
    assert upgrade(d, tok(keys["ec"][0], "ES256"))[0] == 101
    # a kid names one key: the other's signature does not pass
    assert upgrade(d, tok(keys["rsa"][0], "RS256", "e1"))[0] == 401
    assert upgrade(d, tok(keys["rsa"][0], "RS256", "nope"))[0] == 401
    assert upgrade(d, tok(keys["rsa2"][0], "RS256", "r1"))[0] == 401
    # rotation: the new set is read on SIGHUP
    jwks.write_text(json.dumps({"keys": [jwk(keys["rsa2"][1], "r2")]}))
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for("plugin.log", start=mark, plugin="jwt", msg="keys reloaded")
    assert upgrade(d, tok(keys["rsa2"][0], "RS256", "r2"))[0] == 101
    assert upgrade(d, tok(keys["rsa"][0], "RS256", "r1"))[0] == 401


def test_jwks_that_does_not_read_fails_the_load(tmp_path):
    from harness import run_wsplugd
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "RSA", '
                                        '"n": "!!", "e": "AQAB"}]}')
    conf = tmp_path / "c.conf"
    conf.write_text(config(plugins=["jwt"], plugin_sections={"jwt": {
        "jwks": tmp_path / "jwks.json"}}))
    r = run_wsplugd(["-t", "-c", str(conf)])
    assert r.returncode == 1
    assert f"jwks: cannot read {tmp_path / 'jwks.json'}: a JWK that is " \
        "not a usable RSA or P-256 public key" in r.stdout + r.stderr
