#!/usr/bin/env python3
"""Write the seed corpora in tests/fuzz/corpus/<name>/.

The seeds are committed; this script is how they were made, so a change to
a harness's input layout can regenerate them.  Run it from anywhere:

    python3 tests/fuzz/make-corpus.py

It rewrites only the files it names (corpus/<name>/<seed>), never the
working corpora the runner builds elsewhere.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 5.7's key


def write(name, seed, data):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, seed), "wb") as f:
        f.write(data)


def frame(op, payload, fin=True, mask=MASK, rsv=0, length_form=None):
    """A client frame, built by hand (not with the encoder under test)."""
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        h = bytes([b0, mbit | n])
    elif form == 16:
        h = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask is None:
        return h + payload
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return h + mask + body


def close_body(code, reason=b""):
    return struct.pack(">H", code) + reason


def codec():
    # byte 0: max_message (bits 0-2), split mode (3-4), round-trip max
    # (5-7); byte 1: seed; then the stream (and the round-trip script)
    def seed(name, stream, cfg=0x00, s=0x5A):
        write("codec", name, bytes([cfg, s]) + stream)

    seed("text-hello", frame(1, b"Hello"))
    seed("text-fragmented",
         frame(1, b"Hel", fin=False) + frame(0, b"lo"), cfg=0x08)
    seed("text-fragmented-ping-between",
         frame(1, "caf\u00e9 ".encode()[:4], fin=False) +
         frame(9, b"are you there") +
         frame(0, "\u00e9 \U0001F600".encode()[1:], fin=False) +
         frame(0, b"", fin=True), cfg=0x10)
    seed("ping", frame(9, b"Hello"))
    seed("pong", frame(10, b"Hello"))
    seed("close-1000-reason", frame(8, close_body(1000, b"bye")))
    seed("close-empty", frame(8, b""))
    seed("close-4999-utf8", frame(8, close_body(4999, "d\u00e9j\u00e0".encode())))
    seed("binary-16bit-length", frame(2, bytes(range(256)) * 2), cfg=0x18)
    seed("binary-64bit-length-nonminimal",
         frame(2, b"\x00\x01\x02\x03", length_form=64))
    seed("binary-125-126", frame(2, b"x" * 125) + frame(2, b"y" * 126),
         cfg=0x05)
    seed("many-messages",
         frame(1, b'{"type":"ping"}') + frame(9, b"") +
         frame(2, b"\xff\x00") + frame(1, "\u20ac".encode()) +
         frame(8, close_body(1001)), cfg=0x08)
    seed("too-big", frame(1, b"0123456789abcdefXYZ"), cfg=0x04)
    seed("err-unmasked", frame(1, b"Hello", mask=None))
    seed("err-rsv", frame(1, b"Hello", rsv=0x40))
    seed("err-opcode-3", frame(3, b""))
    seed("err-continuation-alone", frame(0, b"x"))
    seed("err-message-in-message",
         frame(1, b"a", fin=False) + frame(1, b"b"))
    seed("err-control-fragmented", frame(9, b"x", fin=False))
    seed("err-control-too-long", frame(9, b"p" * 126))
    seed("err-close-1-byte", frame(8, b"\x03"))
    seed("err-close-code-1005", frame(8, close_body(1005)))
    seed("err-close-reason-utf8", frame(8, close_body(1000, b"\xc3")))
    seed("err-text-surrogate", frame(1, b"\xed\xa0\x80"))
    seed("err-text-truncated", frame(1, b"ok \xe2\x82"))
    seed("err-length-msb",
         bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1]) + MASK)
    # round-trip scripts: kind byte, flags byte, length..., payload bytes
    seed("script-text-frag-pings",
         bytes([0x00, 0x1B, 40]) + "h\u00e9llo w\u00f6rld \u2603 \U0001F600 "
         "\u00e9\u00e9\u00e9 and more text to cut".encode(), cfg=0x08)
    seed("script-binary-16bit",
         bytes([0x02, 0x43, 0x01, 0x10]) + bytes(range(64)), cfg=0x10)
    seed("script-ping-pong-close",
         bytes([0x03, 5]) + b"hello" + bytes([0x04, 0]) +
         bytes([0x05, 0x00, 10]) + b"going away")
    seed("script-raw-text-invalid",
         bytes([0x01, 0x0A, 12]) + b"abc\xc3\x28def\xe2\x82\xac!")


def http():
    def req(lines, path="/ws", method="GET", version="HTTP/1.1"):
        head = "%s %s %s\r\n" % (method, path, version)
        return (head + "".join(l + "\r\n" for l in lines) + "\r\n").encode()

    write("http", "chrome", req([
        "Host: 127.0.0.1:8080",
        "Connection: Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Upgrade: websocket",
        "Origin: http://localhost:3000",
        "Sec-WebSocket-Version: 13",
        "Accept-Encoding: gzip, deflate, br",
        "Accept-Language: en-US,en;q=0.9",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ]))
    write("http", "firefox", req([
        "Host: localhost:8080",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) "
        "Gecko/20100101 Firefox/121.0",
        "Accept: */*",
        "Accept-Language: en-US,en;q=0.5",
        "Accept-Encoding: gzip, deflate, br",
        "Sec-WebSocket-Version: 13",
        "Origin: https://app.example.com",
        "Sec-WebSocket-Protocol: chat, superchat",
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
        "Connection: keep-alive, Upgrade",
        "Sec-Fetch-Dest: empty",
        "Sec-Fetch-Mode: websocket",
        "Sec-Fetch-Site: same-site",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "Upgrade: websocket",
    ], path="/ws?token=abc%20def"))
    write("http", "safari", req([
        "Host: example.com",
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==",
        "Sec-WebSocket-Version: 13",
        "Upgrade: websocket",
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Origin: https://example.com",
        "Connection: Upgrade",
        "User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    ]))
    write("http", "python-websockets", req([
        "Host: [::1]:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: 9b7k8YBdlaNZQTA6xGY6hg==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: v1.json",
        "Sec-WebSocket-Protocol: v2.json",
        "User-Agent: Python/3.11 websockets/10.4",
    ]))
    write("http", "bad-version-8", req([
        "Host: x", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 8"]))
    write("http", "bad-post", req([
        "Host: x", "Upgrade: websocket", "Connection: Upgrade"],
        method="POST"))
    write("http", "bad-http10", req(["Host: x"], version="HTTP/1.0"))
    write("http", "bad-duplicate-host", req(["Host: a", "Host: b"]))
    write("http", "bad-obs-fold", req([
        "Host: x", "Upgrade: websocket", "\tfolded"]))
    write("http", "bad-space-before-colon", req(["Host : x"]))
    write("http", "bad-bare-lf",
          b"GET /ws HTTP/1.1\nHost: x\r\n\r\n")
    write("http", "bad-bare-lf-only",
          b"GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\n\n")
    write("http", "bad-bare-lf-unfinished",
          b"GET /ws HTTP/1.1\r\nHost: x\nUpgrade: websocket\r\n")
    write("http", "bad-key", req([
        "Host: x", "Upgrade: WebSocket/13, h2c", "Connection: close, upgrade",
        "Sec-WebSocket-Key: not-base64-at-all!!!!!==",
        "Sec-WebSocket-Version: 13"]))
    write("http", "pipelined",
          req(["Host: x"]) + b"GET /other HTTP/1.1\r\n\r\n")
    # The discovery document, as a page's fetch() asks for it.
    write("http", "wellknown", req([
        "Host: 127.0.0.1:8080", "Origin: https://app.example.com",
        "Accept: */*", "Cache-Control: no-cache"],
        path="/.well-known/wsplugd"))
    write("http", "wellknown-head", req(["Host: x"],
        path="/.well-known/wsplugd?v=1", method="HEAD"))


def utf8():
    write("utf8", "ascii", b"The quick brown fox jumps over the lazy dog.\n")
    write("utf8", "mixed",
          "na\u00efve caf\u00e9 \u20ac \u2603 \U0001F600 \u4e2d\u6587 "
          "\U0010FFFF \uFFFD end".encode())
    write("utf8", "boundaries",
          "\u007f\u0080\u07ff\u0800\ud7ff\ue000\ufffd\uffff"
          .encode("utf-8", "surrogatepass") +
          "\U00010000\U0010ffff".encode())
    write("utf8", "bom-and-noncharacters", b"\xef\xbb\xbf\xef\xbf\xbe\xef\xb7\x90")
    write("utf8", "nul", b"a\x00b\x00\x00")
    write("utf8", "bad-surrogate", b"ok \xed\xa0\x80 no")
    write("utf8", "bad-surrogate-pair", b"\xed\xa0\xbd\xed\xb8\x80")
    write("utf8", "bad-overlong-nul", b"\xc0\x80")
    write("utf8", "bad-overlong-3", b"\xe0\x80\xaf")
    write("utf8", "bad-overlong-4", b"\xf0\x82\x82\xac")
    write("utf8", "bad-above-10ffff", b"\xf4\x90\x80\x80")
    write("utf8", "bad-f5-ff", b"\xf5\xf8\xfc\xfe\xff")
    write("utf8", "bad-lone-continuation", b"abc\x80def\xbf")
    write("utf8", "truncated-2", b"x\xc3")
    write("utf8", "truncated-3", b"euro \xe2\x82")
    write("utf8", "truncated-4", b"smile \xf0\x9f\x98")
    write("utf8", "ascii-long-then-bad",
          b"abcdefghijklmnopqrstuvwxyz012345" * 3 + b"\xc3\x28")


def config():
    with open(os.path.join(TOP, "etc", "wsplugd.conf.in"), "rb") as f:
        shipped = f.read().replace(b"@plugindir@", b"/usr/lib/wsplugd/plugins")
    write("config", "shipped", shipped)
    write("config", "minimal", b"[server]\nlisten = 127.0.0.1:0\n")
    write("config", "everything", b"""\xef\xbb\xbf; a full config, CRLF
[server]\r
listen = 127.0.0.1:8080, [::1]:8080 0.0.0.0:0\r
path = /socket\r
origins = https://app.example.com http://[::1]:3000, null\r
subprotocols = chat v2.json\r
max_connections = 1000000\r
max_connections_per_ip = 0\r
max_message_size = 64KiB\r
max_header_size = 16KiB\r
max_output_buffer = 4GiB\r
handshake_timeout = 500ms\r
shutdown_timeout = 0\r
slow_callback = 1h\r
[keepalive]\r
ping_interval = 0\r
sweep_interval = 1d\r
idle_timeout = 7d\r
[log]\r
level = debug\r
format = json\r
target = file:/var/log/wsplugd.log\r
[plugins]\r
dir = plugins ; relative to this file\r
[plugin:echo]\r
catch_all = yes\r
[plugin:ping]\r
path = /opt/ping.so\r
enabled = off\r
""")
    write("config", "bad-keys-and-values", b"""[server]
listen = 127.0.0.1
listen = 1.2.3.4:99999
path = ws
bogus = 1
max_message_size = 10
max_header_size = 1KB
handshake_timeout = 99999999999999999999999s
[keepalive]
ping_interval = 30s
idle_timeout = 20s
[log]
level = loud
target = file:
[nosuch]
x = y
""")
    write("config", "bad-sections", b"""key = outside
[plugin:]
[plugin:bad name]
[plugin:ok]
[plugin:ok]
[plugin:ok2] trailing
[server
= value
just words
[plugin:x]
path =
enabled = maybe
enabled = yes
""")
    write("config", "admin-and-log", b"""[server]
listen = 127.0.0.1:8080 127.0.0.1:8080
[admin]
listen = 127.0.0.1:9090
[log]
format = logfmt
target = syslog
[keepalive]
ping_interval = 25s
""")
    write("config", "journal-empty-lists", b"""[log]
target = journal
[server]
listen = , ,
origins =
subprotocols = ,
[plugins]
dir = /usr/lib/wsplugd/plugins/
[plugin:a-b_c]
""")
    write("config", "bad-nul-and-long", b"[server]\npath = /a\x00b\n[log]\nlevel = " +
          b"e" * 200 + b"\n")


def dispatch():
    # byte 0: bit 0 binary, bit 1 catch-all, bits 2-3 both set: no "ping"
    def seed(name, mode, msg):
        write("dispatch", name, bytes([mode]) + msg)

    seed("ping", 0x00, b'{"type":"ping"}')
    seed("ping-with-id", 0x00, b'{"type":"ping","id":"abc-123"}')
    seed("ping-catch-all", 0x02, b'{"type":"ping","id":7}')
    seed("unknown-type-id", 0x00, b'{"type":"chat","id":42,"text":"hi"}')
    seed("unknown-type-long-utf8", 0x00,
         ('{"type":"a' + "\u00e9" * 40 + '","id":[1,{"x":null}]}').encode())
    seed("missing-type", 0x00, b'{"text":"no type","id":true}')
    seed("type-not-string", 0x00, b'{"type":5,"id":"a"}')
    seed("type-null-catch-all", 0x02, b'{"type":null}')
    seed("array", 0x00, b"[1, 2, 3]")
    seed("not-json", 0x00, b"{not json")
    seed("escapes", 0x00, b'{"type":"p\\u0069ng","id":"\\ud83d\\ude00"}')
    seed("nested", 0x00, b'{"a":' * 40 + b"1" + b"}" * 40)
    seed("binary-no-catch-all", 0x01, b"\x00\x01\x02\xff")
    seed("binary-catch-all", 0x03, b"\x00\x01\x02\xff")
    seed("catch-all-only", 0x0E, b"anything at all")
    seed("no-plugins", 0x0C, b'{"type":"ping"}')


def json_read():
    # the whole input is the JSON text
    def seed(name, text):
        write("json_read", name, text if isinstance(text, bytes)
              else text.encode())

    seed("ping", '{"type":"ping","id":123}')
    seed("ping-pretty", '{\n  "type": "ping",\n  "id": "abc-123"\n}\n')
    seed("kinds", '[1,-2,-0,true,false,null,"x",{},[],{"k":[{}]}]')
    seed("spaces", ' \t\r\n{ "a" : [ 1 , 2 ] , "b" : { } }\r\n ')
    seed("escapes", r'{"s":"\"\\\/\b\f\n\r\t","\u0061\n":"\u00e9"}')
    seed("surrogates", r'["\ud83d\ude00","\uDBFF\uDFFF","\ud800"]')
    seed("nul-escape", r'{"a\u0000":"\u0000"}')
    seed("utf8", '{"caf\u00e9":"\u20ac \U0001F600 \U0010FFFF"}')
    seed("bad-utf8", b'["\xc3\x28","\xed\xa0\x80","\xf4\x90\x80\x80"]')
    seed("control", b'["a\x01b","c\nd",\x00]')
    seed("numbers", "[0,999999999999999999,-999999999999999999,"
         "9223372036854775807,-9223372036854775808,9223372036854775808,"
         "1.5,-0.0,1e5,1E+2,1e-400,1e400,01,-,2.]")
    seed("duplicates", '{"a":1,"b":2,"a":{"c":3},"b":[4]}')
    seed("deep-32", "[" * 32 + "]" * 32)
    seed("deep-33", '{"a":' * 32 + "{}" + "}" * 32)
    seed("deep-2049", "[" * 2049 + "]" * 2049)
    seed("top-scalar", '"ping"')
    seed("trailing", '{"a":1} x')
    seed("trailing-comma", '{"a":[1,],}')
    seed("literals", "[true,truex,nul,True]")
    seed("empty", "")


def handover():
    """Hand-over records (core/handover_state.c), written field by field
    as ho_conn_encode does: little-endian integers, byte strings as a
    presence byte, a 32-bit length and the bytes."""
    def u(n, width):
        return n.to_bytes(width, "little")

    def bs(b):
        return b"\0" if b is None else b"\1" + u(len(b), 4) + b

    def record(state, close_code=0, ctl=b"abc", in_payload=1, remaining=4,
               opcode=9, subs=(b"\x04news" + u(7, 8) + b"\x04ab12" +
                               b"\x05r\xc3\xa9le" + u(0, 8) + b"\0")):
        hdr = bytes(14)
        r = (u(state, 1) + b"0123456789abcdef" * 2 + bs(b"127.0.0.1") +
             u(4000, 2) + bs(b"ua") + bs(None) + bs(b"/ws") + bs(None) +
             bs(None) + u(close_code, 2) + u(0, 8) * 2 + u(0, 8) * 4 +
             u(0, 8) * 3 + u(0, 4) +
             # the codec: max_message, rsv1_ok, hdr, hlen, opcode, fin,
             # in_payload, mask, mpos, msg_opcode, msg_compressed, failed,
             # remaining, msg_len, utf8
             u(65536, 8) + u(0, 1) + hdr + u(0, 1) + u(opcode, 1) +
             u(0, 1) + u(in_payload, 1) + bytes(4) + u(0, 1) + u(1, 1) +
             u(0, 1) + u(0, 1) + u(remaining, 8) + u(5, 8) + u(0, 4) +
             bs(ctl) + u(1, 1) + u(1, 1) + bs(b"hello") +
             bs(b"\x81\x01x") + bs(b'{"a":{"k":1}}') +
             # the bus channels: a length byte and the name, the last
             # offset there (8 bytes), a length byte and the epoch, each
             bs(subs) + u(0, 1) + bs(None))
        return u(len(r), 4) + r

    first = record(1)
    write("handover", "record", first)
    write("handover", "two-records",
          first + record(2, close_code=1000, ctl=None, in_payload=0,
                         remaining=0, opcode=1))
    # a listener entry: kind, tls, the address's length, sockaddr_in
    sin = u(2, 2) + struct.pack(">H", 8080) + bytes([127, 0, 0, 1]) + \
        bytes(8)
    write("handover", "listen", u(1, 1) + u(0, 1) + u(len(sin), 2) + sin)


def bus_frame():
    # a stream of frames as a worker's socket carries them, built by hand
    def frame(typ, channel=b"", conn=b"", epoch=b"", data=b"", flags=0,
              ident=0, n1=0, n2=0):
        body = struct.pack(">BBIQQ", typ, flags, ident, n1, n2)
        for s in (channel, conn, epoch):
            body += bytes([len(s)]) + s
        return struct.pack(">I", len(body) + len(data)) + body + data

    conn = b"0123456789abcdef0123456789abcdef"
    write("bus_frame", "publish", frame(1, b"news", conn, data=b'{"a":1}'))
    write("bus_frame", "subscribe-since",
          frame(2, b"news", conn, b"00112233aabbccdd", flags=1, ident=7,
                n1=41))
    write("bus_frame", "message-and-ack",
          frame(7, b"news", b"", b"00112233aabbccdd", b'{"x":"y"}', n1=42)
          + frame(5, b"news", epoch=b"00112233aabbccdd", ident=7, n1=42,
                  n2=3))
    write("bus_frame", "presence", frame(9, b"room", ident=2, n1=2,
                                         data=conn + b"\n" + conn + b"\n"))
    write("bus_frame", "truncated", frame(1, b"news", conn, data=b"{}")[:-5])
    write("bus_frame", "bad-type", frame(0, b"x") + frame(200, b"x"))


def ctl_msg():
    # a worker's control socket, each way (core/ctl_msg.c)
    line = b'1796476959035 {"id":"a"}\n'
    write("ctl_msg", "reload", b"PpCAf")
    write("ctl_msg", "gather", b"G" + struct.pack(">II", 7, 100)
          + b"L" + struct.pack(">III", 1, 7, 100)
          + b"X" + struct.pack(">II", 3, 7))
    write("ctl_msg", "answer", b"R" + struct.pack(">IIQI", 2, 7, 1,
                                                  len(line)) + line)
    write("ctl_msg", "truncated", b"R" + struct.pack(">IIQI", 2, 7, 1, 99))
    write("ctl_msg", "too-long", b"R" + struct.pack(">IIQI", 2, 7, 1,
                                                    0xffffffff))


def redis_msg():
    # what the Redis backend's publish script PUBLISHes
    write("redis_msg", "message",
          b"W1 42 00112233aabbccdd 0123456789abcdef - -\n{\"a\":1}")
    write("redis_msg", "queued-except",
          b"W1 7 00112233aabbccdd 0123456789abcdef q "
          b"0123456789abcdef0123456789abcdef\n{}")
    write("redis_msg", "transient", b"W1 0 e n - -\n{\"x\":\"\\n\"}")
    write("redis_msg", "bad-flag", b"W1 1 e n x -\n{}")


def bus_history():
    """The local bus's history (bus_store_save in core/bus_local.c),
    written field by field: a header with the payload's length and CRC,
    the channels, the messages.  The harness's first byte: odd, as is."""
    def u(n, width):
        return n.to_bytes(width, "little")

    def blob(chans, msgs):
        body = u(len(chans), 4)
        for name, epoch, top in chans:
            body += u(len(name), 1) + name + epoch + u(top, 8)
        body += u(len(msgs), 4)
        for idx, offset, age, data in msgs:
            body += u(idx, 4) + u(offset, 8) + u(age, 8) + u(len(data), 4)
            body += data
        head = u(0x48425357, 4) + u(1, 2) + u(0, 2) + u(len(body), 4)
        return head + u(zlib.crc32(body), 4) + body

    two = blob([(b"news", b"00112233aabbccdd", 3),
                (b"r\xc3\xa9le", b"ffeeddccbbaa9988", 1),
                (b"members-only", b"0123456789abcdef", 0)],
               [(0, 2, 900, b'{"a":1}'), (1, 1, 800, b'"x"'),
                (0, 3, 10, b"")])
    write("bus_history", "channels", b"\1" + two)
    write("bus_history", "empty", b"\1" + blob([], []))
    write("bus_history", "fix-crc", b"\0" + two[:-3])


if __name__ == "__main__":
    codec()
    http()
    utf8()
    config()
    dispatch()
    json_read()
    handover()
    bus_frame()
    ctl_msg()
    redis_msg()
    bus_history()
