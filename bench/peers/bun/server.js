// Bun's WebSocket server (Bun.serve, uWebSockets inside), the fastest
// widely used peer, speaking wsplugd's protocol as the Node.js ws peer
// does: a connection_established greeting, ping -> pong after parsing
// the JSON, an error for anything else, a registry of the connections
// with their metadata.  Keepalive is Bun's own: with sendPings on, a
// connection silent for half of idleTimeout gets a protocol ping and one
// silent for idleTimeout is closed, which is the ws peer's 25 s ping and
// termination of a connection that missed the previous one.
//
//   bun server.js PORT        listens on 127.0.0.1:PORT, path /ws
//   bun server.js PORT CERT KEY
//                             the same over TLS (wss://), with this PEM
//                             certificate and key
//
// Run with the bun binary that npm ci installed here (bench/run finds it).

const port = Number(process.argv[2] || 8080);
const registry = new Map();

let tls;
if (process.argv.length > 4) {
  tls = {
    cert: Bun.file(process.argv[3]),
    key: Bun.file(process.argv[4]),
  };
}

function send(ws, obj) {
  ws.send(JSON.stringify(obj));
}

function error(ws, code, message, id) {
  const reply = { type: 'error', code, message };
  if (id !== undefined) reply.id = id;
  send(ws, reply);
}

function hexId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Buffer.from(b).toString('hex');
}

const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  tls,
  fetch(req, srv) {
    const url = new URL(req.url);
    if (url.pathname !== '/ws')
      return new Response('not found\n', { status: 404 });
    const ip = srv.requestIP(req);
    const data = {
      id: hexId(),
      ip: ip ? ip.address : '',
      port: ip ? ip.port : 0,
      userAgent: req.headers.get('user-agent') || '',
      origin: req.headers.get('origin') || '',
      path: url.pathname + url.search,
      connectedAt: Date.now(),
      msgsIn: 0,
      msgsOut: 0,
    };
    if (srv.upgrade(req, { data })) return undefined;
    return new Response('WebSocket upgrade expected\n', { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 1024 * 1024,
    idleTimeout: 50,
    sendPings: true,
    open(ws) {
      registry.set(ws.data.id, ws);
      send(ws, { type: 'connection_established', connectionId: ws.data.id,
        timestamp: Date.now() });
    },
    message(ws, data) {
      ws.data.msgsIn++;
      if (typeof data !== 'string') {
        ws.close(1003, 'binary messages are not accepted');
        return;
      }
      let msg;
      try {
        msg = JSON.parse(data);
      } catch (e) {
        error(ws, 'invalid_json', `invalid JSON: ${e.message}`);
        return;
      }
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
        error(ws, 'invalid_json', 'a message must be a JSON object');
        return;
      }
      if (typeof msg.type !== 'string') {
        error(ws, 'missing_type', 'a message needs a "type" string', msg.id);
        return;
      }
      ws.data.msgsOut++;
      if (msg.type === 'ping') {
        const reply = { type: 'pong', timestamp: Date.now() };
        if (msg.id !== undefined) reply.id = msg.id;
        send(ws, reply);
        return;
      }
      error(ws, 'unknown_type', `no handler for type "${msg.type}"`, msg.id);
    },
    close(ws) {
      registry.delete(ws.data.id);
    },
  },
});

process.stdout.write(`listening 127.0.0.1:${server.port}${tls ? ' tls' : ''}\n`);

function stop() {
  server.stop(true);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
