// The seed scenario in a real browser: Debian's headless Chromium loads the
// example page (examples/browser/), which runs the client package
// (clients/js) against the real wsplugd.
//
// wsplugd exists for the front end whose /ws connection failed and was
// retried forever.  These tests check, from both ends — what the browser
// saw (Playwright's websocket events, the HTTP status of each upgrade, the
// client's own record on the page) and what the daemon logged — that one
// attempt connects and stays connected, that a page closing or a daemon
// restarting ends and resumes cleanly, once; that against a daemon that
// does not serve /ws the same checks fail and the client stops after one
// attempt, saying why (and so for a refused origin); that a full server's
// Retry-After is read cross-origin and obeyed; that against a server that
// is down it backs off
// instead of storming; that while the page is hidden or offline it makes
// no attempt and resumes with one; and that a daemon gone silent is
// noticed by the client's ping and replaced, one socket at a time; and
// that a page whose socket is cut for two seconds while its channel is
// published to sees every message once, in order (resubscribed with
// since, from the daemon's history).
// The first of these runs once more over wss://, on a certificate the test
// makes.
//
// Timings are short so that a window of ten server pings is three
// seconds: the daemon pings every 300 ms, the page every 200 ms.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect as tcpConnect, createServer as createTcpServer } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Daemon, SLOW, config, quietPort } from './daemon.mjs';

// playwright-core is CommonJS; require() also honours NODE_PATH, which is
// how ./run points at a node_modules outside a read-only source tree.
const { chromium } = createRequire(import.meta.url)('playwright-core');

const here = dirname(fileURLToPath(import.meta.url));
const TOP = join(here, '..', '..');
const ARTIFACTS = process.env.E2E_ARTIFACTS || join(here, 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const KEEPALIVE = {
  ping_interval: '300ms',
  sweep_interval: '1s',
  idle_timeout: '3s',
};
const SERVER = { shutdown_timeout: '2s' };
// The page's client: ping every 200 ms, a missing pong is fatal after
// 1.5 s, retries start at up to 300 ms and never wait more than 5 s.
const PAGE = { ping: 200, pongTimeout: 1500, base: 300, cap: 5000 };
const WINDOW_PINGS = 11; // server pings answered: more than ten intervals

// Clean close codes a browser may send when its page goes away.
const CLEAN_CLOSE = new Set(['1000', '1001']);

let browser;
let http;
let httpPort;
let workdir;
const daemons = [];
const pages = [];

// -- fixtures -------------------------------------------------------------

// The page and the package come from this tiny server, not from wsplugd:
// a front end is served from somewhere else, and the socket then carries
// an Origin of another port, as it would in production.  The page loads
// the package by its npm name through an import map, at its place in the
// source tree.
function serveExample() {
  const files = {
    '/examples/browser/index.html':
      ['examples/browser/index.html', 'text/html; charset=utf-8'],
    '/clients/js/wsplugd-client.js':
      ['clients/js/wsplugd-client.js', 'text/javascript; charset=utf-8'],
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = files[path];
    if (req.method !== 'GET' || !file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' })
      .end(readFileSync(join(TOP, file[0])));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function startDaemon(opts = {}, name = `wsplugd${daemons.length}.conf`) {
  const d = new Daemon(workdir, config({
    server: { ...SERVER, ...opts.server },
    keepalive: { ...KEEPALIVE, ...opts.keepalive },
    extra: opts.extra || '',
  }), name);
  daemons.push(d);
  return d.start();
}

const stopDaemon = (d) => d.stopClean();

// Open the demo page against a daemon and watch its sockets from outside
// the page: Playwright's websocket events (every socket the page creates)
// and the HTTP status of each upgrade, which the page itself cannot see:
// DevTools' handshake response for a 101, Chromium's socket error for a
// refusal.
async function openDemo(wsPort, params, path = '/ws', { on = browser, scheme = 'ws' } = {}) {
  const page = await on.newPage();
  pages.push(page);
  const demo = {
    page, sockets: [], handshakes: [], errors: [],
    changes: new EventEmitter(), // 'change' after each of the above
  };
  const changed = () => demo.changes.emit('change');
  page.on('pageerror', (err) => demo.errors.push(String(err)));
  page.on('websocket', (ws) => {
    const entry = { url: ws.url(), frames: [], error: null };
    demo.sockets.push(entry);
    ws.on('framereceived', (f) => entry.frames.push(f.payload));
    ws.on('socketerror', (err) => {
      entry.error = err;
      // A refused upgrade gets no handshake event from DevTools; its
      // status is in the error Chromium reports for the socket.
      const m = /Unexpected response code: (\d+)/.exec(err);
      if (m) demo.handshakes.push(Number(m[1]));
      changed();
    });
    changed();
  });
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    demo.handshakes.push(e.response.status);
    changed();
  });
  await cdp.send('Network.enable');

  const q = new URLSearchParams({ url: `${scheme}://127.0.0.1:${wsPort}${path}` });
  for (const [k, v] of Object.entries(params)) q.set(k, String(v));
  await page.goto(`http://127.0.0.1:${httpPort}/examples/browser/index.html?${q}`,
    { timeout: 15000 * SLOW });
  return demo;
}

// Wait, bounded, until fn() is true of what Playwright saw (demo.sockets,
// demo.handshakes): those events arrive over their own channel, and may
// trail what the page itself already knows.
function seenUntil(demo, fn, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!fn()) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`not seen in ${timeout * SLOW} ms: ${fn}; sockets ` +
        `${JSON.stringify(demo.sockets.map((s) => s.error))}, handshakes ${demo.handshakes}`));
    }, timeout * SLOW);
    const done = () => {
      clearTimeout(timer);
      demo.changes.off('change', check);
    };
    demo.changes.on('change', check);
    check();
  });
}

// The page's own record of what its client did (index.html, window.demo).
function record(demo) {
  return demo.page.evaluate(() => ({
    ...window.demo.record,
    state: window.demo.client.state,
    stopped: window.demo.client.stopped,
    connectionId: window.demo.client.connectionId,
    lastRtt: window.demo.client.lastRtt,
  }));
}

// Wait, bounded, until fn(record) is true on the page; return the record.
async function pageUntil(demo, fn, arg, timeout = 10000) {
  await demo.page.waitForFunction(fn, arg, { timeout: timeout * SLOW, polling: 20 });
  return record(demo);
}

// The seed scenario's promise, as one check over what both ends saw:
// one socket, upgraded with 101 on its first attempt, and nothing
// refused, closed or retried.  Used both where it must hold and, against
// a daemon without /ws, where it must not.
function assertOneAttemptConnected(d, demo, rec) {
  assert.equal(demo.sockets.length, 1, 'the page opened exactly one WebSocket');
  assert.deepEqual(demo.handshakes, [101], 'the one upgrade was answered 101');
  assert.equal(d.findAll('ws.open').length, 1, 'the daemon opened one connection');
  assert.equal(d.findAll('ws.refuse').length, 0, 'the daemon refused nothing');
  assert.equal(d.findAll('ws.close').length, 0, 'the daemon closed nothing');
  assert.equal(rec.attempts.length, 1, 'the client made one attempt');
  assert.equal(rec.closes.length, 0, 'the client saw no close');
  assert.equal(rec.state, 'open');
}

// The client never runs two sockets: every attempt after the first
// starts after the client saw the previous socket closed.
function assertOneAtATime(rec) {
  for (let i = 1; i < rec.attempts.length; i++) {
    const prev = rec.closes[i - 1];
    assert.ok(prev && prev.t <= rec.attempts[i].t,
      `attempt ${i + 1} started before attempt ${i} was closed`);
  }
}

// Debian's chromium, never a downloaded browser.  Playwright gives it a
// fresh temporary profile (its own --user-data-dir) and deletes it on
// close; the flags keep it off the network beyond loopback.
function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000 * SLOW,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extraArgs,
    ],
  });
}

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), 'wsplugd-e2e-'));
  http = await serveExample();
  httpPort = http.address().port;
  browser = await launchChromium();
});

after(async () => {
  for (const p of pages) await p.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  for (const d of daemons) d.kill();
  await Promise.all(daemons.map((d) => d.exited && d.waitExit({ timeout: 5000 }).catch(() => {})));
  if (http) await new Promise((resolve) => http.close(resolve));
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

// -- the tests ------------------------------------------------------------

test('one attempt connects and stays connected; a closed page closes cleanly',
  { timeout: 60000 * SLOW }, async (t) => {
    const t0 = performance.now();
    const d = await startDaemon();
    const demo = await openDemo(d.port, PAGE);

    const open = await d.waitFor('ws.open');
    let rec = await pageUntil(demo, () => window.demo.record.established.length > 0);
    const id = rec.established[0];

    // The greeting is the first thing on the socket, and its id is the
    // daemon's id for this connection, whose log line records this
    // browser: its user agent, its address, the page's origin.
    assert.equal(id, open.conn);
    assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(rec.messages[0][0], 'connection_established');
    assert.equal(open.ua, await demo.page.evaluate(() => navigator.userAgent));
    assert.equal(open.ip, '127.0.0.1');
    assert.equal(open.path, '/ws');
    assert.equal(open.origin, `http://127.0.0.1:${httpPort}`);

    // A window of more than ten server ping intervals, counted by the
    // pongs the browser sent back to the daemon's protocol pings.
    const t1 = performance.now();
    await d.waitCount('ws.pong', WINDOW_PINGS, { conn: id }, { timeout: 20000 });
    const windowMs = performance.now() - t1;

    // Every application ping answered: wait for a moment with none in
    // flight, then the answered ids are exactly the sent ones.
    rec = await pageUntil(demo, () => {
      const r = window.demo.record;
      return r.pings.length >= 10 && r.pongs.length === r.pings.length;
    });
    assert.deepEqual(rec.pongs, rec.pings, 'every ping answered, in order');
    assert.equal(rec.deadlinks, 0);
    assert.equal(d.findAll('ws.ping_missed').length, 0, 'the browser answered every server ping');
    assert.ok(rec.lastRtt >= 0 && rec.lastRtt < 1500, `last RTT ${rec.lastRtt}`);

    assertOneAttemptConnected(d, demo, rec);
    assert.equal(JSON.parse(demo.sockets[0].frames[0]).type, 'connection_established',
      'the first frame on the wire');
    t.diagnostic(`connected in ${(t1 - t0).toFixed(0)} ms; ${WINDOW_PINGS} server ` +
      `pings in ${windowMs.toFixed(0)} ms; ${rec.pings.length} pings, all answered; ` +
      `last RTT ${rec.lastRtt.toFixed(1)} ms`);
    const conns = await d.admin('/connections');
    assert.equal(conns.active, 1);
    assert.equal(conns.connections[0].id, id);
    assert.equal(conns.connections[0].user_agent, open.ua);
    assert.deepEqual(demo.errors, []);

    mkdirSync(ARTIFACTS, { recursive: true });
    await demo.page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });

    // The page goes away: the browser closes its socket with a close
    // frame, not by dropping TCP, and the daemon's count returns to 0.
    await demo.page.close();
    const closed = await d.waitFor('ws.close', { conn: id });
    assert.ok(CLEAN_CLOSE.has(closed.code), `clean close code, got ${closed.code}`);
    assert.equal(closed.active, '0');
    assert.match(await d.admin('/metrics'), /^wsplugd_connections_active 0$/m);
    await stopDaemon(d);
    t.diagnostic(`page closed with ${closed.code}; whole test ${(performance.now() - t0).toFixed(0)} ms`);
  });

test('SIGTERM closes with 1001; the restarted daemon gets one reconnection',
  { timeout: 60000 * SLOW }, async (t) => {
    // A port no other test's listener can be given while this one is
    // down (tests/e2e/daemon.mjs, quietPort).
    const d1 = await startDaemon({ server: { listen: `127.0.0.1:${await quietPort()}` } });
    const demo = await openDemo(d1.port, PAGE);
    const open1 = await d1.waitFor('ws.open');
    let rec = await pageUntil(demo, () => window.demo.record.established.length > 0);
    const id1 = rec.established[0];
    assert.equal(id1, open1.conn);

    // systemctl restart: SIGTERM, wait for the exit, start again with the
    // same configuration on the same port.
    await stopDaemon(d1);
    const d2 = await startDaemon({ server: { listen: `127.0.0.1:${d1.port}` } });
    assert.equal(d2.port, d1.port);

    assert.equal(d1.findAll('ws.close', { conn: id1 })[0]?.code, '1001');
    rec = await pageUntil(demo, () => window.demo.record.closes.length > 0);
    assert.equal(rec.closes[0].code, 1001, 'the page saw going away');
    assert.equal(rec.closes[0].wasClean, true);
    assert.equal(rec.closes[0].reconnect, true);
    // After a good connection a 1001 starts the backoff from its base:
    // prompt, but jittered.
    assert.ok(rec.closes[0].delay <= PAGE.base, `first retry in ${rec.closes[0].delay} ms`);

    const open2 = await d2.waitFor('ws.open', {}, { timeout: 15000 });
    rec = await pageUntil(demo, () => window.demo.record.established.length > 1);
    const id2 = rec.established[1];
    assert.equal(id2, open2.conn, 'the new id is the new daemon\'s');
    assert.notEqual(id2, id1);

    // Stay a while (five server pings) and count: one reconnection.  A
    // retry that came before the new process listened was refused by the
    // kernel; how many there were depends on how long the restart took
    // (seconds under ASan or valgrind), so what is bounded is the
    // schedule, not the count: every wait under its full-jitter ceiling,
    // doubling from the base after the good connection, one attempt at a
    // time, and the new daemon saw one handshake and no refusal.  Twelve
    // is far above what a doubling schedule fits in any restart here and
    // far below a storm.
    await d2.waitCount('ws.pong', 5, { conn: id2 }, { timeout: 15000 });
    rec = await record(demo);
    const retries = demo.sockets.length - 1;
    assert.ok(retries >= 1 && retries <= 12, `${retries} attempts to reconnect`);
    for (let i = 0; i < retries; i++) {
      const ceiling = Math.min(PAGE.cap, PAGE.base * 2 ** i);
      assert.ok(rec.closes[i].delay <= ceiling,
        `retry ${i + 1} waited ${rec.closes[i].delay} ms, over its ceiling ${ceiling} ms`);
    }
    t.diagnostic(`reconnected after ${retries} attempt(s); waits ${rec.closes.slice(0, retries).map((c) => c.delay).join(', ')} ms`);
    assert.equal(rec.attempts.length, 1 + retries);
    assert.equal(rec.opens.length, 2, 'one reconnection');
    assert.equal(demo.handshakes.filter((s) => s === 101).length, 2);
    assert.equal(d2.findAll('ws.open').length, 1);
    // A refusal would say why in its reason and detail: print them (the
    // daemon's log is kept only in memory).
    const refused = d2.findAll('ws.refuse');
    assert.equal(refused.length, 0, `refused: ${JSON.stringify(refused)}`);
    assert.equal(rec.state, 'open');
    assert.equal(rec.connectionId, id2);
    assertOneAtATime(rec);
    assert.deepEqual(demo.errors, []);
    // Failed attempts, if any, were the ones before the new daemon
    // listened: refused by the kernel, not by wsplugd.
    for (const c of rec.closes.slice(1)) assert.equal(c.code, 1006);
    for (const s of demo.sockets.slice(1, -1)) {
      assert.match(String(s.error), /ERR_CONNECTION_REFUSED/);
    }
    t.diagnostic(`reconnected in ${retries} attempt(s)`);

    await demo.page.close();
    await d2.waitFor('ws.close', { conn: id2, active: 0 });
    await stopDaemon(d2);
  });

// A TCP relay between the page and the daemon that the test can cut:
// every relayed connection is dropped at once (both sides), and for ms
// every new one is closed as soon as it arrives, as a network outage
// does to a browser: the page sees 1006, the daemon a vanished client.
function cuttableProxy(target) {
  const socks = new Set();
  let downUntil = 0;
  const server = createTcpServer((c) => {
    if (performance.now() < downUntil) {
      c.destroy();
      return;
    }
    const u = tcpConnect(target, '127.0.0.1');
    socks.add(c);
    socks.add(u);
    const end = () => {
      c.destroy();
      u.destroy();
      socks.delete(c);
      socks.delete(u);
    };
    for (const s of [c, u]) {
      s.on('error', end);
      s.on('close', end);
    }
    c.pipe(u);
    u.pipe(c);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      // Down until restore(): the outage spans a count of publishes,
      // not a span of time, so a loaded machine that publishes slowly
      // still publishes the same messages into it.
      cut() {
        downUntil = Infinity;
        for (const s of socks) s.destroy();
      },
      restore() { downUntil = 0; },
      get down() { return performance.now() < downUntil; },
      // server.close() waits for every relayed connection to end: a test
      // that failed with its page still open would wait forever.
      close: () => new Promise((r) => {
        for (const s of socks) s.destroy();
        server.close(r);
      }),
    }));
  });
}

test('a socket cut for 2 s while messages are published: each seen once, in order',
  { timeout: 60000 * SLOW }, async (t) => {
    // The page subscribes through a relay the test cuts; a second page,
    // straight to the daemon, publishes all along.  What was published
    // while the page was away comes back when its client resubscribes
    // with since (the daemon's history), so the application sees every
    // message exactly once and in order, with nothing of its own to do.
    const d = await startDaemon({
      extra: '\n[plugin:broadcast]\n\n[bus]\nbackend = local\n',
    });
    const proxy = await cuttableProxy(d.port);
    t.after(() => proxy.close());
    const demo = await openDemo(proxy.port, PAGE);
    const pub = await openDemo(d.port, PAGE);
    await pageUntil(demo, () => window.demo.record.established.length > 0);
    await pageUntil(pub, () => window.demo.record.established.length > 0);
    await demo.page.evaluate(async () => {
      window.feed = [];
      window.demo.client.addEventListener('message', (e) => {
        if (e.detail.type === 'message' && e.detail.channel === 'feed') {
          window.feed.push(e.detail.data);
        }
      });
      await window.demo.client.subscribe('feed');
    });
    const publish = (i) => pub.page.evaluate(
      (k) => window.demo.client.publish('feed', k, { ack: true }), i);
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

    // 100 ms apart: 10 before the cut, 20 during (and at least 2 s of
    // it), 10 after.
    const N = 40;
    let during = 0;
    let cutAt = 0;
    for (let i = 0; i < N; i++) {
      if (i === 10) {
        proxy.cut();
        cutAt = performance.now();
      }
      if (i === 30) {
        await sleep(Math.max(0, cutAt + 2000 * SLOW - performance.now()));
        proxy.restore();
      }
      if (proxy.down) during++;
      const ack = await publish(i);
      assert.equal(ack.type, 'published');
      assert.equal(ack.offset, i + 1);
      await sleep(100);
    }
    assert.equal(during, 20, 'messages published during the cut');
    const rec = await pageUntil(demo, (n) => window.feed.length >= n, N, 20000);
    await sleep(300); // a duplicate would come right behind
    const feed = await demo.page.evaluate(() => window.feed);
    assert.deepEqual(feed, [...Array(N).keys()], 'every message once, in order');
    assert.ok(rec.opens.length >= 2, 'the page reconnected');
    for (const c of rec.closes) assert.equal(c.code, 1006);
    assertOneAtATime(rec);
    assert.deepEqual(demo.errors, []);
    t.diagnostic(`${during} published during the cut; page reconnected ` +
      `after ${rec.attempts.length - 1} attempt(s)`);
    await demo.page.close();
    await pub.page.close();
    await stopDaemon(d);
  });

test('without /ws the page makes exactly one attempt and reports: the seed bug, caught',
  { timeout: 60000 * SLOW }, async (t) => {
    // The daemon serves another path, as the seed's server served none:
    // the upgrade of /ws is answered 404, which the page cannot see; its
    // client asks /.well-known/wsplugd, learns the endpoint is /other,
    // and stops instead of retrying.
    const d = await startDaemon({ server: { path: '/other' } });
    const demo = await openDemo(d.port, { ...PAGE, base: 100 });

    let rec = await pageUntil(demo, () => window.demo.record.stops.length > 0);
    await seenUntil(demo, () => demo.handshakes.length >= 1);
    // The checks the first test passes fail here: this is the test that
    // would have caught the seed's bug.
    assert.throws(() => assertOneAttemptConnected(d, demo, rec),
      assert.AssertionError);
    const s = rec.stops[0];
    assert.deepEqual([s.status, s.reason, s.permanent], [404, 'not_found', true]);
    assert.match(s.detail, /no endpoint at \/ws; this server's is \/other/);
    assert.equal(rec.probes.length, 1);
    assert.equal(rec.closes.length, 1);
    assert.equal(rec.closes[0].reconnect, false);
    assert.deepEqual(rec.retries, []);

    // Many retry periods later: still one attempt, from both ends.
    await new Promise((resolve) => setTimeout(resolve, 1500 * SLOW));
    rec = await record(demo);
    assert.equal(rec.attempts.length, 1, 'the client made one attempt');
    assert.equal(demo.sockets.length, 1, 'the page opened one WebSocket');
    assert.deepEqual(demo.handshakes, [404], 'the browser saw the refusal itself');
    assert.equal(d.findAll('ws.refuse', { status: 404, reason: 'not_found' }).length, 1);
    assert.equal(d.findAll('ws.open').length, 0);
    // The probe, from the page's origin, read cross-origin.
    const probes = d.findAll('http.wellknown');
    assert.equal(probes.length, 1);
    assert.equal(probes[0].status, '200');
    assert.equal(rec.state, 'closed');
    assert.equal(rec.stops.length, 1);
    assert.equal(await demo.page.textContent('#state'), 'closed · stopped');
    assert.deepEqual(demo.errors, []);
    t.diagnostic(`stopped ${(s.t - rec.attempts[0].t).toFixed(0)} ms after its one attempt: ${s.detail}`);

    await demo.page.close();
    await stopDaemon(d);
  });

test('a page whose origin is refused makes one attempt and reports 403',
  { timeout: 60000 * SLOW }, async () => {
    // The page is served from 127.0.0.1:httpPort; the daemon takes
    // another origin only.  The upgrade is refused 403, which the page
    // cannot see; the discovery document, read cross-origin, says so.
    const d = await startDaemon({ server: { origins: 'https://app.example' } });
    const demo = await openDemo(d.port, { ...PAGE, base: 100 });
    let rec = await pageUntil(demo, () => window.demo.record.stops.length > 0);
    const s = rec.stops[0];
    assert.deepEqual([s.status, s.reason, s.permanent], [403, 'forbidden', true]);
    await new Promise((resolve) => setTimeout(resolve, 1000 * SLOW));
    rec = await record(demo);
    assert.equal(rec.attempts.length, 1);
    assert.equal(d.findAll('ws.refuse', { status: 403, reason: 'origin' }).length, 1);
    assert.equal(d.findAll('http.wellknown', { status: 403 }).length, 1);
    assert.deepEqual(demo.errors, []);
    await demo.page.close();
    await stopDaemon(d);
  });

test('a full server: the page reads the 503\'s Retry-After cross-origin and obeys it',
  { timeout: 60000 * SLOW }, async (t) => {
    const d = await startDaemon({ server: { max_connections: 1 } });
    const first = await openDemo(d.port, PAGE);
    await pageUntil(first, () => window.demo.record.established.length > 0);
    const second = await openDemo(d.port, { ...PAGE, base: 100, cap: 400 });
    let rec = await pageUntil(second, () => window.demo.record.retries.length > 0);
    assert.equal(rec.probes[0].status, 503);
    // The hint is the client's slot at the measured accept rate: whole
    // seconds, at least one.
    const hint = rec.probes[0].retryAfter;
    assert.ok(Number.isInteger(hint) && hint >= 1000 && hint % 1000 === 0,
      `Retry-After exposed to the page: ${hint} ms`);
    assert.equal(rec.retries[0].reason, 'retry_after');
    assert.ok(rec.retries[0].delay >= hint && rec.retries[0].delay < hint + 100,
      `delay ${rec.retries[0].delay}`);
    // The slot frees; the second page's next attempt gets in, not sooner
    // than the hint.
    await first.page.close();
    rec = await pageUntil(second, () => window.demo.record.established.length > 0,
      undefined, 15000);
    const gap = rec.attempts[1].t - rec.attempts[0].t;
    assert.ok(gap >= hint, `second attempt after ${gap.toFixed(0)} ms`);
    assert.equal(rec.attempts.length, 2);
    assert.deepEqual(second.errors, []);
    t.diagnostic(`retry in ${rec.retries[0].delay} ms after a 503 with Retry-After: ${hint / 1000}; ` +
      `made after ${gap.toFixed(0)} ms`);
    await second.page.close();
    await stopDaemon(d);
  });

test('a server that is down: the client backs off, it does not storm',
  { timeout: 60000 * SLOW }, async (t) => {
    // A port where no daemon is: every attempt is refused by the kernel
    // and every probe fails, which proves nothing, so the client keeps
    // trying, on schedule.  Jitter is off so that the schedule is exact:
    // 400, 800, 1600 ms.
    const port = await quietPort();
    const base = 400;
    const demo = await openDemo(port, { ...PAGE, base, cap: 6400, jitter: 0 });

    const ATTEMPTS = 4;
    const rec = await pageUntil(demo, (n) => window.demo.record.attempts.length >= n,
      ATTEMPTS, 20000);
    assert.equal(rec.opens.length, 0);
    assert.equal(rec.stops.length, 0, 'a transient failure does not stop it');
    for (const p of rec.probes) assert.equal(p.permanent, false);
    for (const c of rec.closes.slice(0, ATTEMPTS - 1)) assert.equal(c.code, 1006);
    // Growing delays: the client scheduled base·2^n, and the attempts
    // really were that far apart — each gap at least its delay, and each
    // wait from scheduling the retry to making it at least its delay and
    // longer than the wait before.  Not the gaps themselves: a gap also
    // holds the probe that decided the failure was transient, which in
    // one CI run took 650 ms before the first retry and 25 ms before the
    // others (gaps 1048, 828, 1625 ms for delays 400, 800, 1600).
    const delays = rec.retries.slice(0, ATTEMPTS - 1).map((r) => r.delay);
    assert.deepEqual(delays, [base, 2 * base, 4 * base]);
    const at = rec.attempts.slice(0, ATTEMPTS).map((a) => a.t);
    const gaps = at.slice(1).map((x, i) => x - at[i]);
    const waits = at.slice(1).map((x, i) => x - rec.retries[i].t);
    for (let i = 0; i < gaps.length; i++) {
      assert.ok(gaps[i] >= delays[i] - 2, `gap ${i} ${gaps[i]} ms < delay ${delays[i]} ms`);
      assert.ok(waits[i] >= delays[i] - 2, `wait ${i} ${waits[i]} ms < delay ${delays[i]} ms`);
      if (i > 0) assert.ok(waits[i] > waits[i - 1], `waits not growing: ${waits}`);
    }
    assertOneAtATime(rec);
    await seenUntil(demo, () => demo.sockets.length >= ATTEMPTS);
    assert.ok(demo.sockets.length <= ATTEMPTS + 1, `${demo.sockets.length} sockets`);
    for (const s of demo.sockets.slice(0, ATTEMPTS - 1)) {
      assert.match(String(s.error), /ERR_CONNECTION_REFUSED/);
    }
    assert.deepEqual(demo.errors, []);
    t.diagnostic(`attempt gaps ${gaps.map((g) => g.toFixed(0)).join(', ')} ms; ` +
      `waits ${waits.map((w) => w.toFixed(0)).join(', ')} ms`);
    await demo.page.close();
  });

// Set document.visibilityState as a browser does when the tab is hidden
// or shown, and fire the event: headless pages are always "visible".
function setVisibility(demo, state) {
  return demo.page.evaluate((st) => {
    Object.defineProperty(document, 'visibilityState', { value: st, configurable: true });
    Object.defineProperty(document, 'hidden', { value: st === 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

// The page loses its server while paused (hidden or offline): the daemon
// restarts, which the page sees as a 1001.  While paused nothing happens;
// on resume exactly one attempt is made, within [0, base), and connects.
async function pausedRestart(t, pause, unpause, why) {
  const d1 = await startDaemon({ server: { listen: `127.0.0.1:${await quietPort()}` } });
  const demo = await openDemo(d1.port, PAGE);
  let rec = await pageUntil(demo, () => window.demo.record.pongs.length >= 2);
  const id1 = rec.established[0];

  await pause(demo);
  rec = await pageUntil(demo, () => window.demo.record.pauses.length > 0);
  assert.deepEqual(rec.pauses.map((p) => [p.type, p.reason]), [['pause', why]]);
  const pings = rec.pings.length;

  await stopDaemon(d1);
  const d2 = await startDaemon({ server: { listen: `127.0.0.1:${d1.port}` } });
  rec = await pageUntil(demo, () => window.demo.record.closes.length > 0);
  // Ten retry windows, paused: no attempt, no retry scheduled.
  await new Promise((resolve) => setTimeout(resolve, 10 * PAGE.base * SLOW));
  rec = await record(demo);
  assert.equal(rec.attempts.length, 1, 'no attempt while paused');
  assert.equal(demo.sockets.length, 1);
  assert.deepEqual(rec.retries, []);
  assert.equal(d2.findAll('ws.open').length, 0);
  if (why === 'hidden') {
    assert.ok(rec.pings.length <= pings + 1, `pings went on while hidden: ${pings} -> ${rec.pings.length}`);
  }
  assert.equal(await demo.page.textContent('#state'), 'closed · paused');

  const back = await demo.page.evaluate(() => performance.now());
  await unpause(demo);
  rec = await pageUntil(demo, () => window.demo.record.established.length > 1, undefined, 15000);
  assert.deepEqual(rec.pauses.map((p) => p.type), ['pause', 'resume']);
  // Resumed without a burst: one attempt, jittered within [0, base).
  assert.equal(rec.retries.length, 1);
  assert.equal(rec.retries[0].reason, 'resume');
  assert.ok(rec.retries[0].delay < PAGE.base, `resume delay ${rec.retries[0].delay}`);
  assert.equal(rec.attempts.length, 2);
  assert.ok(rec.attempts[1].t >= back);
  const open2 = await d2.waitFor('ws.open');
  assert.equal(rec.established[1], open2.conn);
  assert.notEqual(open2.conn, id1);
  // And pings again.
  await pageUntil(demo, (n) => window.demo.record.pongs.length > n, rec.pongs.length);
  assertOneAtATime(rec);
  assert.deepEqual(demo.errors, []);
  t.diagnostic(`${why}: no attempt while paused; on resume one attempt after ` +
    `${(rec.attempts[1].t - back).toFixed(0)} ms (scheduled ${rec.retries[0].delay} ms)`);
  await demo.page.close();
  await d2.waitFor('ws.close', { conn: open2.conn });
  await stopDaemon(d2);
}

test('hidden: no retries and no pings until visible, then one attempt',
  { timeout: 60000 * SLOW }, (t) => pausedRestart(t,
    (demo) => setVisibility(demo, 'hidden'),
    (demo) => setVisibility(demo, 'visible'), 'hidden'));

test('offline: no retries until online, then one attempt',
  { timeout: 60000 * SLOW }, (t) => pausedRestart(t,
    (demo) => demo.page.context().setOffline(true),
    (demo) => demo.page.context().setOffline(false), 'offline'));

test('a daemon that stops answering is a dead link: dropped, then replaced',
  { timeout: 60000 * SLOW }, async (t) => {
    const d = await startDaemon();
    const demo = await openDemo(d.port,
      { ...PAGE, connectTimeout: 1500, closeTimeout: 1000 });
    let rec = await pageUntil(demo, () => window.demo.record.pongs.length >= 3);
    const id1 = rec.established[0];
    assert.equal((await d.waitFor('ws.open')).conn, id1);

    // A stopped process keeps its sockets: to the browser the link is up
    // as far as TCP goes and silent otherwise, like a hung server or a
    // dead NAT entry.  The missing pong is all the client has to go on.
    const stoppedAt = await demo.page.evaluate(() => performance.now());
    d.proc.kill('SIGSTOP');
    try {
      rec = await pageUntil(demo, () => window.demo.record.deadlinks > 0 &&
        window.demo.record.attempts.length >= 2);
    } finally {
      d.proc.kill('SIGCONT');
    }
    assert.equal(rec.deadlinks, 1);
    assert.equal(rec.closes[0].code, 1006, 'the dead socket never closed cleanly');
    assert.equal(rec.closes[0].reconnect, true);

    // Resumed, the daemon answers the attempt waiting in its backlog (or
    // a later one): a new connection, with a new id, and the old one is
    // ended on the daemon's side too.
    rec = await pageUntil(demo, () => window.demo.record.established.length >= 2,
      undefined, 15000);
    const id2 = rec.established.at(-1);
    assert.notEqual(id2, id1);
    await d.waitFor('ws.open', { conn: id2 });
    const old = await d.waitFor('ws.close', { conn: id1 });
    assert.equal(rec.state, 'open');
    assertOneAtATime(rec);
    assert.deepEqual(demo.errors, []);
    t.diagnostic(`the silent socket was dropped ${rec.closes[0].t - stoppedAt | 0} ms ` +
      `after SIGSTOP; reconnected in ${rec.attempts.length - 1} attempt(s); ` +
      `the daemon closed the old connection with ${old.code}`);

    await demo.page.close();
    await d.waitFor('ws.close', { conn: id2 });
    await stopDaemon(d);
  });

// wss:// served by the daemon itself.  The test makes an ECDSA P-256
// certificate for 127.0.0.1 with the openssl command, and a second
// Chromium trusts exactly that key (its SPKI pin); the page, its client
// and every check are those of the first test, over TLS.
test('over wss:// the same one attempt connects, pings, and closes cleanly',
  { timeout: 60000 * SLOW }, async (t) => {
    const cert = join(workdir, 'e2e-cert.pem');
    const key = join(workdir, 'e2e-key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec',
      '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key,
      '-out', cert, '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2'],
    { stdio: 'ignore', timeout: 30000 });
    chmodSync(key, 0o600);
    const spki = createHash('sha256').update(new X509Certificate(
      readFileSync(cert)).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64');
    const tlsBrowser = await launchChromium(
      [`--ignore-certificate-errors-spki-list=${spki}`]);
    try {
      const d = await startDaemon({
        server: { listen: '127.0.0.1:0 tls' },
        extra: `\n[tls]\ncertificate = ${cert}\nkey = ${key}\n`,
      });
      const demo = await openDemo(d.port, PAGE, '/ws', { on: tlsBrowser, scheme: 'wss' });
      const open = await d.waitFor('ws.open');
      assert.equal(open.tls, 'TLSv1.3');
      let rec = await pageUntil(demo, () => window.demo.record.established.length > 0);
      const id = rec.established[0];
      assert.equal(id, open.conn);
      assert.equal(demo.sockets[0].url, `wss://127.0.0.1:${d.port}/ws`);
      await d.waitCount('ws.pong', 3, { conn: id }, { timeout: 20000 });
      rec = await pageUntil(demo, () => {
        const r = window.demo.record;
        return r.pings.length >= 3 && r.pongs.length === r.pings.length;
      });
      assert.deepEqual(rec.pongs, rec.pings, 'every ping answered, in order');
      assertOneAttemptConnected(d, demo, rec);
      assert.deepEqual(demo.errors, []);
      await demo.page.close();
      const closed = await d.waitFor('ws.close', { conn: id });
      assert.ok(CLEAN_CLOSE.has(closed.code), `clean close code, got ${closed.code}`);
      await stopDaemon(d);
      t.diagnostic(`wss: ${open.tls} ${open.cipher}; ${rec.pings.length} pings answered`);
    } finally {
      await tlsBrowser.close().catch(() => {});
    }
  });
