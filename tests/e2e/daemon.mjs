// The real wsplugd for the end-to-end test, and what it logs.
//
// The same approach as tests/integration/harness.py: the test writes the
// configuration it needs, starts the daemon on 127.0.0.1:0 (the kernel
// picks the port, the daemon logs it) and waits for log lines, never for
// wall-clock sleeps.  Every wait is bounded, and a daemon that exits while
// a wait is pending fails that wait at once, with the log's tail.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const WSPLUGD = process.env.WSPLUGD || 'core/wsplugd';
export const PLUGIN_DIR = process.env.WSPLUGD_PLUGIN_DIR || 'plugins/.libs';
export const TEST_PLUGIN_DIR = process.env.WSPLUGD_TEST_PLUGIN_DIR || 'tests/plugins/.libs';
const WRAPPER = (process.env.WSPLUGD_WRAPPER || '').split(/\s+/).filter(Boolean);
// Under valgrind the daemon runs some 20-50 times slower.
export const SLOW = WRAPPER.length ? 10 : 1;

// A port nothing listens on, that no other test on this machine will be
// given while a test needs connections to it refused ("the server is
// down"): below the kernel's ephemeral range, and free when looked at.
// Every other listener in the tests binds port 0, which draws from that
// range, and so does every outgoing connection, which also rules out a
// socket connecting to itself.  The port a stopped daemon had is not
// enough: once the kernel gave it to another test's daemon, and the
// client under test connected there instead of being refused.
export async function quietPort() {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range',
      'utf8').trim().split(/\s+/)[0]) || low;
  } catch { /* no procfs: the common default */ }
  const from = 20000;
  assert.ok(low - from >= 1000, `ephemeral ports start at ${low}: no room below`);
  for (let i = 0; i < 50; i++) {
    const port = from + Math.floor(Math.random() * (low - from));
    const free = await new Promise((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port in ${from}..${low - 1} after 50 tries`);
}

const FIELD = /([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)/g;

// One logfmt line to an object of strings.  The daemon's escapes (\" \\
// \n \r \t \u00XX) are all JSON escapes, so JSON.parse unquotes a value.
export function parseLogfmt(line) {
  const out = {};
  for (const [, key, val] of line.matchAll(FIELD)) {
    if (val.startsWith('"')) {
      try {
        out[key] = JSON.parse(val);
      } catch {
        out[key] = val.slice(1, -1);
      }
    } else {
      out[key] = val;
    }
  }
  return out;
}

// The INI text for a test: loopback, a kernel-picked port, debug logging,
// the admin listener on a kernel-picked port too, and the plugins the
// client talks to (by default the shipped greeting and ping); extra is
// appended as it is (a [tls] section, say).
export function config({
  server = {}, keepalive = {}, log = {},
  plugins = ['connection_established', 'ping'], extra = '',
} = {}) {
  const sections = [
    ['server', { listen: '127.0.0.1:0', path: '/ws', ...server }],
    ['keepalive', keepalive],
    ['log', { level: 'debug', ...log }],
    ['admin', { listen: '127.0.0.1:0' }],
    ['plugins', { dir: PLUGIN_DIR }],
    // A name, or [name, keys] for a plugin with settings (a path).
    ...plugins.map((p) => (Array.isArray(p) ? [`plugin:${p[0]}`, p[1]] : [`plugin:${p}`, {}])),
  ];
  return sections
    .map(([name, keys]) => [`[${name}]`,
      ...Object.entries(keys).map(([k, v]) => `${k} = ${v}`)].join('\n'))
    .join('\n\n') + '\n' + extra;
}

const matches = (ev, event, fields) => ev.event === event &&
  Object.entries(fields).every(([k, v]) => ev[k] === String(v));

export class Daemon {
  // dir: where to write the configuration; text: the configuration.
  constructor(dir, text, name = 'wsplugd.conf') {
    this.conf = join(dir, name);
    writeFileSync(this.conf, text);
    this.lines = [];
    this.events = [];
    this.waiters = new Set();
    this.proc = null;
    this.port = null;
    this.adminPort = null;
    this.exited = null; // a promise of {code, signal}
    this.exitStatus = null;
  }

  async start({ timeout = 10000 } = {}) {
    const [cmd, ...args] = [...WRAPPER, WSPLUGD, '-c', this.conf];
    this.proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      createInterface({ input: stream }).on('line', (line) => this._line(line));
    }
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': by then both pipes are drained, so every
      // line the daemon wrote has been seen.
      this.proc.on('close', (code, signal) => {
        this.exitStatus = { code, signal };
        for (const w of this.waiters) w.check(true);
        resolve(this.exitStatus);
      });
    });
    this.proc.on('error', (err) => {
      this.exitStatus = { code: null, signal: null, error: err };
      for (const w of this.waiters) w.check(true);
    });
    const listen = await this.waitFor('listen.start', {}, { timeout });
    this.port = Number(listen.addr.split(':').pop());
    const admin = await this.waitFor('admin.start', {}, { timeout });
    this.adminPort = Number(admin.addr.split(':').pop());
    await this.waitFor('daemon.start', {}, { timeout });
    return this;
  }

  _line(line) {
    this.lines.push(line);
    this.events.push(parseLogfmt(line));
    for (const w of this.waiters) w.check(false);
  }

  tail(n = 60) {
    return this.lines.slice(-n).join('\n');
  }

  mark() {
    return this.events.length;
  }

  findAll(event, fields = {}, start = 0) {
    return this.events.slice(start).filter((ev) => matches(ev, event, fields));
  }

  // Resolve with the first `count` matching events from `start` on;
  // reject after `timeout` ms or when the daemon exits first.
  waitCount(event, count, fields = {}, { timeout = 10000, start = 0 } = {}) {
    return new Promise((resolve, reject) => {
      const w = {
        check: (dead) => {
          const found = this.findAll(event, fields, start);
          if (found.length >= count) {
            finish();
            resolve(found.slice(0, count));
          } else if (dead) {
            finish();
            reject(new Error(`wsplugd exited (${JSON.stringify(this.exitStatus)}) ` +
              `with ${found.length} of ${count} ${event} ${JSON.stringify(fields)}:\n` +
              this.tail()));
          }
        },
      };
      const timer = setTimeout(() => {
        finish();
        const n = this.findAll(event, fields, start).length;
        reject(new Error(`only ${n} of ${count} ${event} ${JSON.stringify(fields)} ` +
          `in ${timeout * SLOW} ms:\n${this.tail()}`));
      }, timeout * SLOW);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(w);
      };
      this.waiters.add(w);
      w.check(this.exitStatus !== null);
    });
  }

  async waitFor(event, fields = {}, opts = {}) {
    return (await this.waitCount(event, 1, fields, opts))[0];
  }

  // SIGTERM and wait for the exit, bounded; the exit status is the
  // caller's to check (a clean stop is 0).
  async stop({ timeout = 20000 } = {}) {
    if (!this.proc || this.exitStatus) return this.exitStatus;
    this.proc.kill('SIGTERM');
    return this.waitExit({ timeout });
  }

  async waitExit({ timeout = 20000 } = {}) {
    let timer;
    const late = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(
        `wsplugd did not exit in ${timeout * SLOW} ms:\n${this.tail()}`)), timeout * SLOW);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  // A clean stop is part of every test: SIGTERM, exit 0.
  async stopClean() {
    const st = await this.stop();
    assert.deepEqual({ code: st.code, signal: st.signal }, { code: 0, signal: null },
      `wsplugd did not stop cleanly:\n${this.tail()}`);
  }

  // For clean-up after a failure: no questions asked.
  kill() {
    if (this.proc && !this.exitStatus) this.proc.kill('SIGKILL');
  }

  async admin(path) {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`,
      { signal: AbortSignal.timeout(5000 * SLOW) });
    if (!res.ok) throw new Error(`admin ${path}: HTTP ${res.status}`);
    return path === '/metrics' ? res.text() : res.json();
  }
}
