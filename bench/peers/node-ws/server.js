'use strict';
// The Node.js endpoint wsplugd replaces, on npm's ws@8, speaking the same
// protocol: a connection_established greeting, ping -> pong after parsing
// the JSON, an error for anything else, and a protocol ping every 25 s
// (a connection that missed the previous one is terminated).  Like the
// daemon it keeps a registry of its connections with their metadata.
//
//   node server.js PORT        listens on 127.0.0.1:PORT, path /ws
//   node server.js PORT CERT KEY
//                              the same over TLS (wss://), as a Node.js
//                              application serves it: ws on an https
//                              server, with this PEM certificate and key

const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8080);
const registry = new Map();

let tls = null;
if (process.argv.length > 4) {
  // TLS 1.3 as the other servers are measured; Node's session tickets
  // stay on (its default), but the load generator never resumes.
  tls = https.createServer({
    cert: fs.readFileSync(process.argv[3]),
    key: fs.readFileSync(process.argv[4]),
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['http/1.1'],
  });
}

const wss = new WebSocketServer({
  ...(tls ? { server: tls } : { host: '127.0.0.1', port }),
  path: '/ws',
  perMessageDeflate: false,
  maxPayload: 1024 * 1024,
  clientTracking: true,
});

function send(ws, obj) {
  ws.send(JSON.stringify(obj));
}

function error(ws, code, message, id) {
  const reply = { type: 'error', code, message };
  if (id !== undefined) reply.id = id;
  send(ws, reply);
}

wss.on('connection', (ws, req) => {
  const id = crypto.randomBytes(16).toString('hex');
  registry.set(id, {
    ws,
    ip: req.socket.remoteAddress,
    port: req.socket.remotePort,
    userAgent: req.headers['user-agent'] || '',
    origin: req.headers.origin || '',
    path: req.url,
    connectedAt: Date.now(),
    msgsIn: 0,
    msgsOut: 0,
  });
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('close', () => { registry.delete(id); });
  ws.on('error', () => {});
  send(ws, { type: 'connection_established', connectionId: id,
    timestamp: Date.now() });

  ws.on('message', (data, isBinary) => {
    ws.isAlive = true;
    if (isBinary) {
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
    if (msg.type === 'ping') {
      const reply = { type: 'pong', timestamp: Date.now() };
      if (msg.id !== undefined) reply.id = msg.id;
      send(ws, reply);
      return;
    }
    error(ws, 'unknown_type', `no handler for type "${msg.type}"`, msg.id);
  });
});

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, 25000);

wss.on('listening', () => {
  process.stdout.write(`listening 127.0.0.1:${port}${tls ? ' tls' : ''}\n`);
});
if (tls) tls.listen(port, '127.0.0.1');

function stop() {
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => {
    if (tls) tls.close(() => process.exit(0));
    else process.exit(0);
  });
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
