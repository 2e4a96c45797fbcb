// wsplugd-client against the real daemon, in Node (node --test).
//
// Node 18 has no global WebSocket: the `ws` package (a pinned test
// dependency; the client itself has none) is injected, as an application
// on Node 18 would.  The daemon is started from the build tree by the same
// helper as the browser tests (tests/e2e/daemon.mjs): its log is what the
// assertions compare the client's own record with.
//
// What is checked: sends made before open are queued and flushed in order,
// and a full queue is an error event; request() gets the reply with its
// id, and is rejected on an error reply, a timeout or a close; the retry
// schedule is never beaten (jittered and not), and 1,000 clients of a
// restarted daemon spread over the window (the histogram is printed); a
// missing endpoint (404) or a refused origin (403) stops the client after
// one attempt, and so does a path the server lists as gone (410); a
// graceful restart's 1012 slots (SIGQUIT) are obeyed by every client; a
// 503 at max_connections (Retry-After) and a close 1012 or
// 1013 with retry_after_ms (the closer test plugin) are obeyed; channels
// are subscribed again after a reconnect and their messages delivered
// once, in order.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { Daemon, SLOW, TEST_PLUGIN_DIR, config, quietPort } from '../../../tests/e2e/daemon.mjs';
import { WsplugdClient, WsplugdError } from '../wsplugd-client.js';

// CommonJS through require(), which honours NODE_PATH (see ./run).
const WebSocket = createRequire(import.meta.url)('ws');

let workdir;
const daemons = [];
const clients = [];

before(() => {
  workdir = mkdtempSync(join(tmpdir(), 'wsplugd-client-'));
});

after(async () => {
  for (const c of clients) c.close();
  for (const d of daemons) d.kill();
  await Promise.all(daemons.map((d) => d.exited && d.waitExit({ timeout: 5000 }).catch(() => {})));
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

async function startDaemon(opts = {}) {
  const d = new Daemon(workdir, config({
    plugins: ['connection_established', 'ping', 'broadcast'],
    ...opts,
    server: { shutdown_timeout: '2s', ...opts.server },
  }), `wsplugd${daemons.length}.conf`);
  daemons.push(d);
  return d.start();
}

const stopDaemon = (d) => d.stopClean();

// A client with the test's timings, its events recorded with the time
// they happened (performance.now()).
function makeClient(url, options = {}) {
  const c = new WsplugdClient(url, {
    WebSocket, pingInterval: 5000, pongTimeout: 3000, backoffBase: 200,
    backoffCap: 2000, requestTimeout: 5000 * SLOW, ...options,
  });
  const rec = {
    attempts: [], opens: [], closes: [], retries: [], messages: [], errors: [],
    stopped: [], probes: [], established: [], resubscribed: [],
  };
  const on = (type, list) => c.addEventListener(type, (e) =>
    list.push({ ...(typeof e.detail === 'object' ? e.detail : {}), t: performance.now() }));
  on('connecting', rec.attempts);
  on('open', rec.opens);
  on('close', rec.closes);
  on('retry', rec.retries);
  on('error', rec.errors);
  on('stopped', rec.stopped);
  on('probe', rec.probes);
  on('established', rec.established);
  on('resubscribed', rec.resubscribed);
  c.addEventListener('message', (e) => rec.messages.push(e.detail));
  c.rec = rec;
  clients.push(c);
  return c;
}

// Resolve when fn() holds, checked on every event of the client; bounded.
function until(c, fn, timeout = 10000, what = String(fn)) {
  return new Promise((resolve, reject) => {
    const types = ['connecting', 'open', 'close', 'retry', 'message', 'error',
      'stopped', 'probe', 'established', 'resubscribed', 'pong'];
    const check = () => {
      if (!fn()) return;
      done();
      resolve();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`not reached in ${timeout * SLOW} ms: ${what}`));
    }, timeout * SLOW);
    const done = () => {
      clearTimeout(timer);
      for (const t of types) c.removeEventListener(t, check);
    };
    for (const t of types) c.addEventListener(t, check);
    check();
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('sends before open are queued and flushed in order; overflow is an error event',
  { timeout: 30000 * SLOW }, async () => {
    const d = await startDaemon();
    const c = makeClient(`ws://127.0.0.1:${d.port}/ws`, { queueLimit: 3 });
    // The README's own snippet: send right after connect().
    c.connect();
    assert.equal(c.state, 'connecting');
    assert.equal(c.send({ type: 'ping', id: 'q1' }), true);
    assert.equal(c.send({ type: 'ping', id: 'q2' }), true);
    assert.equal(c.send(JSON.stringify({ type: 'ping', id: 'q3' })), true);
    assert.equal(c.queued, 3);
    assert.equal(c.send({ type: 'ping', id: 'q4' }), false, 'the fourth overflows');
    assert.equal(c.rec.errors.length, 1);
    assert.equal(c.rec.errors[0].code, 'queue_full');
    assert.match(c.rec.errors[0].data, /"q4"/);

    await until(c, () => c.rec.messages.filter((m) => m.type === 'pong').length === 3);
    const pongs = c.rec.messages.filter((m) => m.type === 'pong').map((m) => m.id);
    assert.deepEqual(pongs, ['q1', 'q2', 'q3'], 'each queued message answered once, in order');
    assert.equal(c.queued, 0);
    // The greeting came first: the queue went out after open, on the one socket.
    assert.equal(c.rec.messages[0].type, 'connection_established');
    assert.equal(c.rec.attempts.length, 1);
    await d.waitFor('ws.open', { conn: c.connectionId });
    assert.equal(d.findAll('ws.open').length, 1);
    // Open, a send goes straight out.
    assert.equal(c.send({ type: 'ping', id: 'q5' }), true);
    assert.equal(c.queued, 0);
    await until(c, () => c.rec.messages.some((m) => m.id === 'q5'));

    // After close() nothing is accepted, and the application is told.
    c.close();
    assert.equal(c.send({ type: 'ping' }), false);
    assert.equal(c.rec.errors.at(-1).code, 'stopped');
    await d.waitFor('ws.close', { conn: c.rec.established[0].connectionId });
    await stopDaemon(d);
  });

test('request() resolves with the reply of the same id; rejects on error, timeout and close',
  { timeout: 40000 * SLOW }, async () => {
    const d = await startDaemon();
    const c = makeClient(`ws://127.0.0.1:${d.port}/ws`, { closeTimeout: 500 });
    c.connect();
    // Made before open: queued, then answered.
    const [a, b] = await Promise.all([
      c.request({ type: 'ping' }),
      c.request({ type: 'ping', id: 7 }),
    ]);
    assert.equal(a.type, 'pong');
    assert.match(String(a.id), /^~req:\d+$/);
    assert.equal(b.id, 7);
    assert.ok(Number.isFinite(b.timestamp));
    // Replies are the promise's, not 'message' events.
    assert.equal(c.rec.messages.filter((m) => m.type === 'pong').length, 0);

    // An error reply rejects, with the server's code.
    await assert.rejects(c.request({ type: 'subscribe', channel: '' }),
      (err) => err instanceof WsplugdError && err.code === 'invalid_channel' &&
        err.reply.type === 'error');
    await assert.rejects(c.request({ type: 'no_such_type' }),
      (err) => err instanceof WsplugdError && err.reply?.type === 'error');

    // A server that does not answer: timeout.
    d.proc.kill('SIGSTOP');
    try {
      await assert.rejects(c.request({ type: 'ping' }, { timeout: 300 }),
        (err) => err.code === 'timeout');
      // A request in flight on a socket that closes: rejected 'closed'.
      const lost = c.request({ type: 'ping' }, { timeout: 20000 });
      c.reconnect();
      await assert.rejects(lost, (err) => err.code === 'closed');
    } finally {
      d.proc.kill('SIGCONT');
    }
    // ... and the client carries on on a new socket.
    const again = await c.request({ type: 'ping' });
    assert.equal(again.type, 'pong');
    assert.equal(c.rec.opens.length, 2);
    c.close();
    await stopDaemon(d);
  });

test('backoff: no attempt sooner than the schedule allows, jittered or not',
  { timeout: 60000 * SLOW }, async (t) => {
    // A port where no daemon is (yet): every attempt is refused by the
    // kernel, and every probe fails too (transient).
    const port = await quietPort();

    for (const jitter of [false, true]) {
      const c = makeClient(`ws://127.0.0.1:${port}/ws`,
        { backoffBase: 50, backoffCap: 800, jitter });
      c.connect();
      const N = 8;
      await until(c, () => c.rec.attempts.length >= N, 30000);
      c.close();
      const at = c.rec.attempts.map((x) => x.t);
      const gaps = at.slice(1, N).map((x, i) => x - at[i]);
      const delays = c.rec.retries.slice(0, N - 1).map((r) => r.delay);
      for (let i = 0; i < N - 1; i++) {
        const ceiling = Math.min(800, 50 * 2 ** i);
        if (jitter) {
          assert.ok(delays[i] >= 0 && delays[i] < ceiling,
            `retry ${i + 1}: delay ${delays[i]} outside [0, ${ceiling})`);
        } else {
          assert.equal(delays[i], ceiling, `retry ${i + 1}`);
        }
        // Timers may fire a millisecond early by the clock we read.
        assert.ok(gaps[i] >= delays[i] - 1,
          `attempt ${i + 2} came ${gaps[i].toFixed(1)} ms after the previous, ` +
          `sooner than its ${delays[i]} ms`);
      }
      for (const p of c.rec.probes) assert.equal(p.permanent, false);
      assert.equal(c.rec.stopped.length, 1, 'stopped only by close()');
      t.diagnostic(`jitter=${jitter}: delays ${delays.join(', ')} ms; ` +
        `gaps ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`);
    }

    // The daemon comes back on the port: the next attempt connects, and
    // a healthy connection resets the schedule.
    const c = makeClient(`ws://127.0.0.1:${port}/ws`, { backoffBase: 50, backoffCap: 400 });
    c.connect();
    await until(c, () => c.rec.attempts.length >= 3);
    const d = await startDaemon({ server: { listen: `127.0.0.1:${port}` } });
    await until(c, () => c.rec.established.length === 1, 10000);
    await d.waitFor('ws.open', { conn: c.connectionId });
    assert.equal(d.findAll('ws.open').length, 1);
    c.close();
    await stopDaemon(d);
  });

test('1,000 clients of a restarted daemon spread their reconnects over the window',
  { timeout: 120000 * SLOW }, async (t) => {
    const N = 1000;
    const BASE = 2000;
    // The new daemon takes the old one's port while the clients retry
    // it: one no other test's listener, and no client's own end, can be
    // given in between.
    const d1 = await startDaemon({
      log: { level: 'info' },
      server: { shutdown_timeout: '5s', listen: `127.0.0.1:${await quietPort()}` },
    });
    const url = `ws://127.0.0.1:${d1.port}/ws`;
    const crowd = [];
    for (let i = 0; i < N; i++) {
      const c = makeClient(url, {
        backoffBase: BASE, backoffCap: 16000, pingInterval: 600000, pongTimeout: 60000,
        connectTimeout: 20000,
      });
      crowd.push(c);
      c.connect();
    }
    await Promise.all(crowd.map((c) => until(c, () => c.rec.established.length === 1, 60000)));
    await d1.waitCount('ws.open', N, {}, { timeout: 30000 });
    // Only the clients' first pongs: a reconnect after a healthy socket
    // starts the backoff from its base.
    await Promise.all(crowd.map((c) => until(c, () => c.lastRtt !== null, 30000)));

    // systemctl restart: SIGTERM (1001 to everyone), then the new process.
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const t0 = performance.now();
    await stopDaemon(d1);
    const d2 = await startDaemon({
      log: { level: 'info' }, server: { listen: `127.0.0.1:${d1.port}` },
    });
    const up = performance.now() - t0;
    await Promise.all(crowd.map((c) => until(c, () => c.rec.established.length === 2, 90000)));
    const done = performance.now() - t0;

    // Every client reconnected once, and only once.
    await d2.waitCount('ws.open', N, {}, { timeout: 30000 });
    assert.equal(d2.findAll('ws.open').length, N);
    // The first retry of each client: scheduled within [0, BASE) after the
    // 1001, uniformly, and never made sooner than scheduled.
    const delays = crowd.map((c) => c.rec.closes[0].delay);
    const first = crowd.map((c) => c.rec.attempts[1].t - c.rec.closes[0].t);
    for (const c of crowd) {
      assert.equal(c.rec.closes[0].code, 1001);
      assert.ok(c.rec.closes[0].delay >= 0 && c.rec.closes[0].delay < BASE);
      assert.ok(c.rec.attempts[1].t - c.rec.closes[0].t >= c.rec.closes[0].delay - 1,
        'an attempt sooner than scheduled');
    }
    const BUCKET = 200;
    const histogram = (xs) => {
      const h = new Array(BASE / BUCKET + 1).fill(0); // the last: BASE and later
      for (const x of xs) h[Math.min(h.length - 1, Math.floor(x / BUCKET))] += 1;
      return h;
    };
    const planned = histogram(delays);
    const made = histogram(first);
    t.diagnostic(`first reconnect attempt after the 1001, ${N} clients: ` +
      'scheduled / made (ms after the close)');
    for (let i = 0; i < planned.length; i++) {
      const range = i < planned.length - 1
        ? `${String(i * BUCKET).padStart(5)}-${String((i + 1) * BUCKET).padEnd(5)}`
        : `${String(BASE).padStart(5)}+     `;
      t.diagnostic(`${range} ms ${String(planned[i]).padStart(4)} ${String(made[i]).padStart(4)} ` +
        `${'*'.repeat(Math.round(made[i] / 5))}`);
    }
    // Uniform over ten buckets is 100 each (sd ~10); a storm or waves
    // would pile hundreds into one.
    const expect = N / (BASE / BUCKET);
    for (const n of planned.slice(0, -1)) {
      assert.ok(n < expect * 1.6 && n > expect * 0.4, `schedule not spread: ${planned}`);
    }
    assert.equal(planned.at(-1), 0);
    // The attempts as made trail the schedule by the test process's own
    // event-loop delay (a thousand clients in one Node process), which
    // only spreads them further: they must cover the window, not pile up.
    const span = Math.max(...first) - Math.min(...first);
    assert.ok(span >= 0.75 * BASE, `attempts made within ${span.toFixed(0)} ms`);
    // The busiest 100 ms of all attempts, failed ones included.
    const all = crowd.flatMap((c) => c.rec.attempts.slice(1).map((a) => a.t - t0)).sort((a, b) => a - b);
    let peak = 0;
    for (let i = 0, j = 0; i < all.length; i++) {
      while (all[i] - all[j] > 100) j++;
      peak = Math.max(peak, i - j + 1);
    }
    const retried = crowd.filter((c) => c.rec.attempts.length > 2).length;
    lag.disable();
    t.diagnostic(`new daemon up ${up.toFixed(0)} ms after SIGTERM; all ${N} back in ` +
      `${done.toFixed(0)} ms; ${all.length} attempts, at most ${peak} in any 100 ms; ` +
      `${retried} clients needed more than one attempt; mean scheduled delay ` +
      `${(delays.reduce((x, y) => x + y, 0) / N).toFixed(0)} ms; test process event-loop ` +
      `delay p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms`);

    for (const c of crowd) c.close();
    await d2.waitCount('ws.close', N, {}, { timeout: 30000 });
    await stopDaemon(d2);
  });

test('a missing endpoint (404) stops the client after one attempt, and says why',
  { timeout: 30000 * SLOW }, async () => {
    const d = await startDaemon({ server: { path: '/other' } });
    const c = makeClient(`ws://127.0.0.1:${d.port}/ws`, { backoffBase: 50 });
    c.connect();
    await until(c, () => c.rec.stopped.length === 1);
    const s = c.rec.stopped[0];
    assert.equal(s.permanent, true);
    assert.equal(s.status, 404);
    assert.equal(s.reason, 'not_found');
    assert.match(s.detail, /no endpoint at \/ws; this server's is \/other/);
    assert.equal(c.stopped, true);
    assert.equal(c.rec.closes.length, 1);
    assert.equal(c.rec.closes[0].reconnect, false);
    assert.deepEqual(c.rec.retries, []);
    // Long enough for several retries at 50 ms had there been any.
    await sleep(1000);
    assert.equal(c.rec.attempts.length, 1, 'exactly one attempt');
    assert.equal(d.findAll('ws.refuse', { status: 404 }).length, 1);
    assert.equal(d.findAll('http.wellknown', { status: 200 }).length, 1, 'one probe');
    // A request made now is refused at once, not queued forever.
    await assert.rejects(c.request({ type: 'ping' }), (err) => err.code === 'stopped');
    await stopDaemon(d);
  });

test('a path the server lists as gone (410) stops the client after one attempt',
  { timeout: 30000 * SLOW }, async () => {
    const d = await startDaemon({ server: { path: '/v2/ws', gone: '/ws' } });
    const c = makeClient(`ws://127.0.0.1:${d.port}/ws`, { backoffBase: 50 });
    c.connect();
    await until(c, () => c.rec.stopped.length === 1);
    const s = c.rec.stopped[0];
    assert.deepEqual([s.permanent, s.status, s.reason], [true, 410, 'gone']);
    assert.match(s.detail, /\/ws is gone; this server's endpoint is \/v2\/ws/);
    await sleep(500);
    assert.equal(c.rec.attempts.length, 1, 'exactly one attempt');
    assert.equal(d.findAll('ws.refuse', { status: 410, reason: 'gone' }).length, 1);
    await stopDaemon(d);
  });

test('a graceful restart (SIGQUIT): every client obeys its 1012 slot and they come back spread',
  { timeout: 90000 * SLOW }, async (t) => {
    const N = 200;
    const SPREAD = 1500;
    const d1 = await startDaemon({
      log: { level: 'info' },
      server: { restart_spread: `${SPREAD}ms`, listen: `127.0.0.1:${await quietPort()}` },
    });
    const url = `ws://127.0.0.1:${d1.port}/ws`;
    const crowd = [];
    for (let i = 0; i < N; i++) {
      const c = makeClient(url, {
        backoffBase: 200, backoffCap: 2000, pingInterval: 600000, pongTimeout: 60000,
        connectTimeout: 20000,
      });
      crowd.push(c);
      c.connect();
    }
    await Promise.all(crowd.map((c) => until(c, () => c.rec.established.length === 1, 60000)));
    const t0 = performance.now();
    d1.proc.kill('SIGQUIT');
    const st = await d1.waitExit({ timeout: 30000 });
    assert.deepEqual({ code: st.code, signal: st.signal }, { code: 0, signal: null });
    const d2 = await startDaemon({
      log: { level: 'info' }, server: { listen: `127.0.0.1:${d1.port}` },
    });
    await Promise.all(crowd.map((c) => until(c, () => c.rec.established.length === 2, 60000)));
    const hints = [];
    for (const c of crowd) {
      const close = c.rec.closes[0];
      assert.equal(close.code, 1012);
      const hint = JSON.parse(close.reason).retry_after_ms;
      hints.push(close.t - t0 + hint);
      assert.equal(c.rec.retries[0].reason, 'retry_after');
      // Never before the slot the server gave.
      assert.ok(c.rec.attempts[1].t - close.t >= hint - 1,
        `an attempt ${(c.rec.attempts[1].t - close.t).toFixed(0)} ms after a ${hint} ms slot`);
    }
    // The slots lie a second after the restart finished closing, and spread.
    const lo = Math.min(...hints);
    const hi = Math.max(...hints);
    assert.ok(lo >= SPREAD + 1000 - 5, `first slot ${lo.toFixed(0)} ms after SIGQUIT`);
    assert.ok(hi - lo >= 0.7 * SPREAD, `slots within ${(hi - lo).toFixed(0)} ms`);
    await d2.waitCount('ws.open', N, {}, { timeout: 30000 });
    t.diagnostic(`${N} clients: slots ${lo.toFixed(0)}..${hi.toFixed(0)} ms after SIGQUIT`);
    for (const c of crowd) c.close();
    await d2.waitCount('ws.close', N, {}, { timeout: 30000 });
    await stopDaemon(d2);
  });

test('a refused origin (403) stops the client after one attempt',
  { timeout: 30000 * SLOW }, async () => {
    const d = await startDaemon({ server: { origins: 'https://good.example' } });
    const ORIGIN = 'https://evil.example';
    // What a page on that origin sends, on the socket and on the probe.
    class OriginWebSocket extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols, { origin: ORIGIN });
      }
    }
    const originFetch = (url, init) => fetch(url, { ...init, headers: { origin: ORIGIN } });
    const c = makeClient(`ws://127.0.0.1:${d.port}/ws`,
      { WebSocket: OriginWebSocket, fetch: originFetch, backoffBase: 50 });
    c.connect();
    await until(c, () => c.rec.stopped.length === 1);
    assert.deepEqual([c.rec.stopped[0].status, c.rec.stopped[0].reason, c.rec.stopped[0].permanent],
      [403, 'forbidden', true]);
    await sleep(500);
    assert.equal(c.rec.attempts.length, 1);
    assert.equal(d.findAll('ws.refuse', { status: 403, reason: 'origin' }).length, 1);
    assert.equal(d.findAll('http.wellknown', { status: 403 }).length, 1);
    await stopDaemon(d);
  });

test('a 503 at max_connections: the Retry-After is obeyed, then the client gets in',
  { timeout: 40000 * SLOW }, async (t) => {
    const d = await startDaemon({ server: { max_connections: 1 } });
    const url = `ws://127.0.0.1:${d.port}/ws`;
    const holder = makeClient(url);
    holder.connect();
    await until(holder, () => holder.rec.established.length === 1);

    const c = makeClient(url, { backoffBase: 100, backoffCap: 400 });
    c.connect();
    await until(c, () => c.rec.retries.length === 1);
    const r = c.rec.retries[0];
    assert.equal(r.reason, 'retry_after');
    assert.equal(c.rec.probes[0].status, 503);
    // The probe's slot: a second away, or two when it follows the
    // refused upgrade closely (the slots after it are spaced at the
    // accept rate, and Retry-After rounds up).
    const hint = c.rec.probes[0].retryAfter;
    assert.ok(hint === 1000 || hint === 2000, `Retry-After ${hint} ms`);
    // Never sooner than the hint, and jittered on top of it (at most one
    // backoff step of 100 ms).
    assert.ok(r.delay >= hint - 10 && r.delay < hint + 100, `delay ${r.delay}`);
    await d.waitFor('ws.refuse', { status: 503, reason: 'max_connections' });

    // Make room while the client waits; its next attempt gets in.
    holder.close();
    await d.waitFor('ws.close', { conn: holder.rec.established[0].connectionId });
    await until(c, () => c.rec.established.length === 1, 15000);
    const gap = c.rec.attempts[1].t - c.rec.attempts[0].t;
    assert.ok(gap >= hint, `second attempt after ${gap.toFixed(0)} ms`);
    assert.equal(c.rec.attempts.length, 2, 'no attempt in between');
    // The probe is refused too, hint and all: two 503s in the log.
    assert.equal(d.findAll('ws.refuse', { status: 503 }).length, 2);
    t.diagnostic(`hint ${hint} ms; retry scheduled in ${r.delay} ms; came after ${gap.toFixed(0)} ms`);
    c.close();
    await stopDaemon(d);
  });

test('a close 1013 or 1012 with {"retry_after_ms": N}: no attempt before N ms',
  { timeout: 40000 * SLOW }, async (t) => {
    // The closer test plugin closes the asking connection with the code
    // and reason asked for: a server shedding load or restarting.
    const d = await startDaemon({
      plugins: ['connection_established', 'ping',
        ['closer', { path: join(TEST_PLUGIN_DIR, 'closer.so') }]],
    });
    const c = makeClient(`ws://127.0.0.1:${d.port}/ws`, { backoffBase: 100, backoffCap: 400 });
    c.connect();
    const cases = [[1013, 1500], [1012, 800], [1013, null]];
    for (const [i, [code, hint]] of cases.entries()) {
      await until(c, () => c.rec.established.length === i + 1 && c.lastRtt !== null);
      const reason = hint === null ? 'try again later' : JSON.stringify({ retry_after_ms: hint });
      c.send({ type: 'close_me', code, reason });
      await until(c, () => c.rec.established.length === i + 2, 15000);
      const close = c.rec.closes[i];
      const retry = c.rec.retries[i];
      const gap = c.rec.attempts[i + 1].t - close.t;
      assert.deepEqual([close.code, close.reason, close.reconnect], [code, reason, true]);
      assert.equal(retry.delay, close.delay);
      if (hint === null) {
        assert.equal(retry.reason, 'backoff');
        assert.ok(retry.delay < 400, `delay ${retry.delay}`);
      } else {
        // The hint is a floor; at most one backoff ceiling of jitter on top.
        assert.equal(retry.reason, 'retry_after');
        assert.ok(retry.delay >= hint - 1 && retry.delay < hint + 400, `delay ${retry.delay}`);
        assert.ok(gap >= hint - 1, `attempt ${gap.toFixed(0)} ms after a ${hint} ms hint`);
      }
      assert.equal(d.findAll('ws.close', { code }).length >= 1, true);
      t.diagnostic(`close ${code} "${reason}": retry scheduled in ${retry.delay} ms, ` +
        `made after ${gap.toFixed(0)} ms`);
    }
    assert.equal(c.rec.attempts.length, cases.length + 1, 'one attempt per close');
    c.close();
    await stopDaemon(d);
  });

test('channels are resubscribed after a reconnect; each message delivered once, in order',
  { timeout: 40000 * SLOW }, async (t) => {
    const d = await startDaemon();
    const url = `ws://127.0.0.1:${d.port}/ws`;
    const sub = makeClient(url, { backoffBase: 100 });
    const pub = makeClient(url);
    sub.connect();
    pub.connect();
    // Subscribed before open: sent on open, resolved by the reply.
    const reply = await sub.subscribe('room');
    assert.equal(reply.type, 'subscribed');
    assert.deepEqual(sub.channels, ['room']);

    const got = () => sub.rec.messages.filter((m) => m.type === 'message' && m.channel === 'room')
      .map((m) => m.data);
    let n = 0;
    const publish = async (k) => {
      for (let i = 0; i < k; i++) {
        const ack = await pub.publish('room', ++n, { ack: true });
        assert.equal(ack.type, 'published');
      }
    };
    await publish(5);
    await until(sub, () => got().length === 5);

    // The link drops; the client reconnects and subscribes again by itself.
    sub.reconnect();
    await until(sub, () => sub.rec.resubscribed.length === 1, 15000);
    assert.equal(sub.rec.resubscribed[0].channel, 'room');
    // The broadcast plugin numbers its messages (the daemon's bus): the
    // client resumes from the last offset it saw, and the daemon says it
    // recovered everything after it.
    assert.equal(sub.rec.resubscribed[0].since, 5);
    assert.equal(sub.rec.resubscribed[0].recovered, true);
    const conn2 = sub.rec.established[1].connectionId;
    await publish(5);
    await until(sub, () => got().length === 10);
    assert.deepEqual(got(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'once each, in order');
    // Three connections in all: the publisher's and the subscriber's two.
    await d.waitFor('ws.open', { conn: conn2 });
    assert.equal(d.findAll('ws.open').length, 3);

    // Unsubscribed: not resubscribed, and nothing more delivered.
    await sub.unsubscribe('room');
    await publish(1);
    sub.reconnect();
    await until(sub, () => sub.rec.established.length === 3, 15000);
    await publish(1);
    // A round trip on the subscriber's own socket: anything the daemon
    // queued for it before the ack has arrived by its reply.
    await sub.request({ type: 'ping' });
    assert.deepEqual(got(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(sub.rec.resubscribed.length, 1);
    t.diagnostic('10 of 10 messages delivered in order across one reconnect');
    sub.close();
    pub.close();
    await stopDaemon(d);
  });
