// The client's pure parts, without a server: retry hints and the channel
// cursor that keeps a replayed message from being delivered twice once
// the server numbers its messages (offset, epoch).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ChannelCursor, WsplugdClient, closeRetryHint, parseRetryAfter } from '../wsplugd-client.js';

test('Retry-After: seconds or an HTTP date', () => {
  assert.equal(parseRetryAfter('5'), 5000);
  assert.equal(parseRetryAfter(' 0 '), 0);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0, 'a past date: now');
  for (const bad of [null, undefined, '', '-1', '1.5', 'soon']) {
    assert.equal(parseRetryAfter(bad, now), null, String(bad));
  }
});

test('close hints: 1012 and 1013 with {"retry_after_ms": N} only', () => {
  assert.equal(closeRetryHint(1013, '{"retry_after_ms":2500}'), 2500);
  assert.equal(closeRetryHint(1012, '{"retry_after_ms":0}'), 0);
  assert.equal(closeRetryHint(1001, '{"retry_after_ms":2500}'), null);
  assert.equal(closeRetryHint(1013, 'try again later'), null);
  assert.equal(closeRetryHint(1013, '{"retry_after_ms":-1}'), null);
  assert.equal(closeRetryHint(1013, '{"retry_after_ms":"5"}'), null);
  assert.equal(closeRetryHint(1013, 'null'), null);
  assert.equal(closeRetryHint(1013, ''), null);
});

test('channel cursor: each offset once, in order; a new epoch starts afresh', () => {
  const c = new ChannelCursor();
  assert.deepEqual(c.resume(), {}, 'nothing seen: no since');
  // Without offsets (today's broadcast plugin) everything is delivered.
  assert.equal(c.accept({}), true);
  assert.equal(c.accept({}), true);
  // The subscribe reply names the position; replayed and live messages
  // after it are delivered once.
  c.position({ offset: 10, epoch: 'A' });
  assert.deepEqual(c.resume(), { since: 10, epoch: 'A' });
  assert.equal(c.accept({ offset: 10, epoch: 'A' }), false, 'at the position: seen');
  assert.equal(c.accept({ offset: 11, epoch: 'A' }), true);
  assert.equal(c.accept({ offset: 12 }), true, 'epoch omitted: the current one');
  assert.equal(c.accept({ offset: 12, epoch: 'A' }), false, 'a replay of 12');
  assert.equal(c.accept({ offset: 11, epoch: 'A' }), false);
  assert.deepEqual(c.resume(), { since: 12, epoch: 'A' });
  // A resubscribe reply at an older position does not move the cursor back.
  c.position({ offset: 11, epoch: 'A' });
  assert.deepEqual(c.resume(), { since: 12, epoch: 'A' });
  // The server lost its history: a new epoch, whose offsets start over.
  c.position({ offset: 0, epoch: 'B' });
  assert.equal(c.accept({ offset: 1, epoch: 'B' }), true);
  assert.deepEqual(c.resume(), { since: 1, epoch: 'B' });
  // Offsets without epochs.
  const d = new ChannelCursor();
  assert.equal(d.accept({ offset: 3 }), true);
  assert.equal(d.accept({ offset: 3 }), false);
  assert.deepEqual(d.resume(), { since: 3 });
});

test('backoff ceiling doubles up to the cap and never overflows', () => {
  const c = new WsplugdClient('ws://127.0.0.1:9/ws', { backoffBase: 100, backoffCap: 1000 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 1e6].map((n) => c.backoffCeiling(n)),
    [100, 200, 400, 800, 1000, 1000, 1000]);
  for (let i = 0; i < 1000; i++) {
    const x = c.backoffDelay(i % 8);
    assert.ok(x >= 0 && x < c.backoffCeiling(i % 8));
  }
  const plain = new WsplugdClient('ws://x/ws', { backoffBase: 100, backoffCap: 1000, jitter: false });
  assert.equal(plain.backoffDelay(2), 400);
});

test('without a WebSocket (Node 18, none injected) the client stops and says so', () => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket;
  try {
    const c = new WsplugdClient('ws://127.0.0.1:9/ws');
    const stopped = [];
    c.addEventListener('stopped', (e) => stopped.push(e.detail));
    c.connect();
    assert.equal(stopped.length, 1);
    assert.equal(stopped[0].permanent, true);
    assert.match(stopped[0].detail, /no WebSocket/);
    assert.equal(c.attempts, 1);
  } finally {
    if (saved !== undefined) globalThis.WebSocket = saved;
  }
});

test('npm pack takes exactly the files meant', () => {
  const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'],
    { cwd: pkg, encoding: 'utf8', timeout: 60000 });
  const [info] = JSON.parse(out);
  assert.equal(info.name, 'wsplugd-client');
  assert.deepEqual(info.files.map((f) => f.path).sort(),
    ['LICENSE', 'README.md', 'package.json', 'wsplugd-client.d.ts', 'wsplugd-client.js']);
});
