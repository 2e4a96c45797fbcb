// wsplugd-client: the browser (and Node >= 18) client for wsplugd, as a
// dependency-free ES module.  README.md lists every option and event;
// wsplugd-client.d.ts declares them for TypeScript.
//
// It exists because of the failure wsplugd was written against: a page that
// asks for /ws, gets no proper answer and retries forever, as fast as it
// can.  So the client keeps one socket, proves the link is alive with an
// application ping, and when it has to reconnect it waits longer after each
// failure, with full jitter, so that neither one page nor a thousand pages
// after a server restart hammer the server.  It obeys the server's retry
// hints, and it stops for good, and says why, when retrying cannot help:
// a browser hides the HTTP status of a refused handshake, so after a
// handshake that failed before opening it asks the server with fetch()
// (the /.well-known/wsplugd discovery document, then the endpoint itself)
// whether the endpoint exists at all.
//
// What the application sends is never dropped silently: messages sent while
// (re)connecting wait in a bounded queue and go out in order on open, and a
// full queue is an 'error' event.  Channels subscribed through subscribe()
// are subscribed again after every reconnect, from the last offset seen
// when the server numbers its messages, and each message is delivered once.

const DEFAULTS = Object.freeze({
  WebSocket: undefined, // the constructor; globalThis.WebSocket when unset
  fetch: undefined, // for the probe; globalThis.fetch when unset
  protocols: undefined, // Sec-WebSocket-Protocol offer, if any
  pingInterval: 25000, // ms between application pings
  pongTimeout: 10000, // ms a ping may stay unanswered before the link is dead
  backoffBase: 1000, // ms: the first retry waits up to this long
  backoffCap: 30000, // ms: no backoff step ever waits longer than this
  jitter: true, // full jitter; false gives the plain doubling schedule
  retryAfterCap: 300000, // ms: the longest server hint obeyed as such
  connectTimeout: 10000, // ms a socket may stay in CONNECTING
  closeTimeout: 2000, // ms to wait for a socket we closed to report closed
  queueLimit: 1000, // messages held while not open
  requestTimeout: 10000, // ms request() waits for its reply
  probe: true, // ask the server with fetch() after a failed handshake
  probeTimeout: 5000, // ms each probe request may take
  pauseWhenHidden: true, // no retries and no pings while the page is hidden
  pauseWhenOffline: true, // no retries while the browser is offline
});

// The readyState values, so that an injected WebSocket without the static
// constants works too.
const CONNECTING = 0;
const OPEN = 1;

// 1008 is the server's verdict on this client ("policy violation": a
// refused origin, a message it will not take).  Reconnecting would get the
// same verdict again, so the client stops and says so.
const STOP_CODES = new Set([1008]);

// 1001 (going away) and 1012 (service restart) say the server is leaving on
// purpose and will be back: the link itself was fine, so the backoff starts
// again from the base — prompt, but still jittered, so that the clients of a
// restarted server do not all arrive in the same millisecond.
const PROMPT_CODES = new Set([1001, 1012]);

// 1011 (internal error), 1013 (try again later) and 1014 (bad gateway) say
// the server is in trouble; even after a good connection the backoff keeps
// growing rather than starting again, to give it room to recover.
const TROUBLE_CODES = new Set([1011, 1013, 1014]);

// Close codes whose reason may carry {"retry_after_ms": N}.
const HINT_CODES = new Set([1012, 1013]);

// HTTP statuses that say the endpoint is not there for this client, and
// will not be on the next attempt either: stop instead of retrying.
const PERMANENT_STATUS = new Map([
  [401, 'unauthorized'],
  [403, 'forbidden'],
  [404, 'not_found'],
  [410, 'gone'],
]);

const WELL_KNOWN = '/.well-known/wsplugd';

/** An error with a machine-readable `code` (and the server's reply, when
 * there was one). */
export class WsplugdError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [reply]
   */
  constructor(code, message, reply) {
    super(message);
    this.name = 'WsplugdError';
    this.code = code;
    this.reply = reply;
  }
}

// CustomEvent is not a global in Node 18; Event and EventTarget are.
class ClientEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

/**
 * Retry-After as milliseconds: delta-seconds or an HTTP date; null when
 * absent or unreadable.
 * @param {string | null | undefined} value
 * @param {number} [now]
 * @returns {number | null}
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its day and month; Date.parse alone would also
  // take "-1" or "2" for a year.
  if (!/^[A-Za-z]{3}, /.test(text)) return null;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/**
 * The retry hint a close frame's reason may carry: {"retry_after_ms": N}.
 * @param {number} code
 * @param {string} reason
 * @returns {number | null}
 */
export function closeRetryHint(code, reason) {
  if (!HINT_CODES.has(code) || !reason) return null;
  try {
    const v = JSON.parse(reason);
    const ms = v && typeof v === 'object' ? v.retry_after_ms : undefined;
    return Number.isFinite(ms) && ms >= 0 ? ms : null;
  } catch {
    return null;
  }
}

/**
 * Per-channel delivery bookkeeping: which offset (and epoch) of the
 * channel the application has seen, so that a message replayed after a
 * resubscription is not delivered twice.  Messages without an offset (the
 * broadcast plugin before it numbers them) are always delivered: the
 * server sends each of them once per connection.
 */
export class ChannelCursor {
  constructor() {
    /** @type {number | null} */
    this.offset = null;
    /** @type {unknown} */
    this.epoch = null;
  }

  /**
   * Should this message be delivered?  Updates the cursor when it is.
   * @param {{offset?: unknown, epoch?: unknown}} msg
   * @returns {boolean}
   */
  accept(msg) {
    if (!Number.isFinite(msg.offset)) return true;
    const offset = /** @type {number} */ (msg.offset);
    const epoch = msg.epoch === undefined ? this.epoch : msg.epoch;
    // A new epoch is a new history (the server lost or reset it): its
    // offsets have nothing to do with the old ones.
    if (this.offset !== null && epoch === this.epoch && offset <= this.offset) {
      return false;
    }
    this.offset = offset;
    this.epoch = epoch;
    return true;
  }

  /**
   * A subscribe reply that names the channel's position: where delivery
   * continues from when nothing has been seen yet, or in a new epoch.
   * @param {{offset?: unknown, epoch?: unknown}} reply
   */
  position(reply) {
    if (!Number.isFinite(reply.offset)) return;
    const epoch = reply.epoch === undefined ? this.epoch : reply.epoch;
    if (this.offset === null || epoch !== this.epoch) {
      this.offset = /** @type {number} */ (reply.offset);
      this.epoch = epoch;
    }
  }

  /** The fields a resubscription carries: {since, epoch} once known. */
  resume() {
    if (this.offset === null) return {};
    return this.epoch === null || this.epoch === undefined
      ? { since: this.offset }
      : { since: this.offset, epoch: this.epoch };
  }
}

export class WsplugdClient extends EventTarget {
  /**
   * @param {string} url ws:// or wss:// URL of the endpoint
   * @param {object} [options] see README.md, or WsplugdClientOptions in the .d.ts
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    /** @type {'connecting' | 'open' | 'closed'} */
    this.state = 'closed';
    this.stopped = false; // true after close() or a permanent failure
    this.paused = false; // hidden or offline: no retries
    this.connectionId = null;
    this.lastRtt = null; // ms, of the last answered ping
    this.attempts = 0; // sockets opened so far, successful or not
    this.retryAt = null; // Date.now() of the next attempt, while waiting

    this._started = false; // connect() was called and close() was not
    this._ws = null; // the one socket; a new one is made only when null
    this._probing = false; // a failed handshake is being diagnosed
    this._failures = 0; // consecutive failures: the backoff exponent
    this._notBefore = 0; // Date.now() before which no attempt may start
    this._healthy = false; // this socket has answered a ping
    this._opened = false; // this socket got past the handshake
    this._pingSeq = 0;
    this._inFlight = null; // {id, seq, sentAt} of the unanswered ping
    this._timers = {}; // name -> {id, interval}; see _setTimer
    this._queue = []; // {text, req} waiting for an open socket
    this._reqSeq = 0;
    this._pending = new Map(); // request id -> {resolve, reject, ws, timer}
    this._channels = new Map(); // channel -> {cursor, waiters, confirmed}
    this._left = new Set(); // channels unsubscribed: late messages dropped
    this._env = null; // browser listeners while started
  }

  /** Messages waiting for an open socket. */
  get queued() {
    return this._queue.length;
  }

  /** Start connecting, and stay connected until close() or a stop. */
  connect() {
    if (this.stopped) {
      // A fresh start after close() or a stop: forget the old failures.
      this.stopped = false;
      this._failures = 0;
    }
    this._started = true;
    this._watchEnvironment();
    // Already connected, connecting, diagnosing or waiting for a scheduled
    // retry: that path gets there; a second socket never.
    if (this._ws || this._probing || this._timers.retry !== undefined) return;
    if (this.paused) return;
    this._open();
  }

  /**
   * Stop for good: close the socket, cancel any retry, reject every
   * pending request and drop the queue.
   */
  close(code = 1000, reason = 'client closing') {
    this._stop({ code, reason });
  }

  /** Drop the current socket and connect again (backoff from its base). */
  reconnect() {
    if (this.stopped || !this._started) return;
    this._failures = 0;
    if (this._ws) this._drop(4001, 'client reconnecting');
  }

  /**
   * Send a JSON message (an object, or a string sent as it is).  While the
   * socket is not open it is queued and sent, in order, on open.  Returns
   * false, with an 'error' event, when it cannot be: the queue is full or
   * the client was stopped.
   * @param {unknown} message
   * @returns {boolean}
   */
  send(message) {
    return this._send(typeof message === 'string' ? message : JSON.stringify(message), null);
  }

  /**
   * Send a message and resolve with the reply carrying the same "id" (one
   * is assigned when the message has none).  Rejects with a WsplugdError:
   * code 'timeout', 'closed' (the socket closed before the reply),
   * 'stopped', 'queue_full', or the server's error code when the reply is
   * {"type":"error"}.
   * @param {Record<string, unknown>} message
   * @param {{timeout?: number}} [opts]
   * @returns {Promise<any>}
   */
  request(message, { timeout = this.options.requestTimeout } = {}) {
    return new Promise((resolve, reject) => {
      if (message === null || typeof message !== 'object') {
        reject(new TypeError('request() takes a message object'));
        return;
      }
      const id = message.id ?? `~req:${++this._reqSeq}`;
      if (this._pending.has(id)) {
        reject(new WsplugdError('duplicate_id', `a request with id ${id} is pending`));
        return;
      }
      const req = { id, resolve, reject, ws: null, timer: null };
      req.timer = setTimeout(() => {
        this._unqueue(req);
        this._settle(id, new WsplugdError('timeout', `no reply to ${id} in ${timeout} ms`));
      }, timeout);
      this._pending.set(id, req);
      if (!this._send(JSON.stringify({ ...message, id }), req)) {
        this._settle(id, new WsplugdError(this.stopped ? 'stopped' : 'queue_full',
          'the request could not be sent'));
      }
    });
  }

  /**
   * Subscribe to a broadcast channel, now and after every reconnect.
   * Resolves with the first "subscribed" reply; rejects on an error reply
   * (the channel is then forgotten) or after the timeout (it is kept, and
   * subscribed again on the next reconnect).
   * @param {string} channel
   * @param {{timeout?: number}} [opts]
   * @returns {Promise<any>}
   */
  subscribe(channel, { timeout = this.options.requestTimeout } = {}) {
    return new Promise((resolve, reject) => {
      if (this.stopped) {
        reject(new WsplugdError('stopped', 'the client is stopped'));
        return;
      }
      this._left.delete(channel);
      let ch = this._channels.get(channel);
      const fresh = !ch;
      if (fresh) {
        ch = { cursor: new ChannelCursor(), waiters: [], confirmed: false };
        this._channels.set(channel, ch);
      }
      const waiter = { resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        ch.waiters = ch.waiters.filter((w) => w !== waiter);
        reject(new WsplugdError('timeout', `no reply to subscribe ${channel} in ${timeout} ms`));
      }, timeout);
      ch.waiters.push(waiter);
      if (ch.confirmed) {
        this._resolveWaiters(ch, { type: 'subscribed', channel });
      } else if (fresh && this._isOpen()) {
        this._subscribeNow(channel, ch);
      }
      // Otherwise the subscription goes out on open (_resubscribe).
    });
  }

  /**
   * Leave a channel: it is no longer resubscribed, and its messages are no
   * longer delivered.  Resolves with the server's reply when connected,
   * at once with null when not (there is nothing to leave).
   * @param {string} channel
   * @returns {Promise<any>}
   */
  unsubscribe(channel) {
    const ch = this._channels.get(channel);
    if (!ch) return Promise.resolve(null);
    this._channels.delete(channel);
    this._left.add(channel);
    for (const w of ch.waiters) {
      clearTimeout(w.timer);
      w.reject(new WsplugdError('unsubscribed', `unsubscribed from ${channel}`));
    }
    // Open, the server has the subscription or is about to (our subscribe
    // went out first on this socket): undo it.  Not open, there is none.
    if (!this._isOpen()) return Promise.resolve(null);
    return this.request({ type: 'unsubscribe', channel });
  }

  /**
   * Publish to a channel.  With ack, a request whose promise resolves
   * with the server's "published" reply; without, a send().
   * @param {string} channel
   * @param {unknown} data
   * @param {{ack?: boolean, timeout?: number}} [opts]
   */
  publish(channel, data, { ack = false, timeout } = {}) {
    const msg = { type: 'publish', channel, data };
    return ack ? this.request(msg, { timeout }) : this.send(msg);
  }

  /** Channels this client keeps subscribed. */
  get channels() {
    return [...this._channels.keys()];
  }

  /**
   * The ceiling of the backoff after `failures` consecutive failures:
   * min(backoffCap, backoffBase * 2^failures).
   * @param {number} failures
   */
  backoffCeiling(failures) {
    const { backoffBase, backoffCap } = this.options;
    // The exponent stops growing long before 2 ** n could overflow: a
    // day-long outage must not turn the delay into Infinity or NaN.
    return Math.min(backoffCap, backoffBase * 2 ** Math.min(failures, 30));
  }

  /**
   * The delay before the next attempt after `failures` consecutive
   * failures.  Full jitter (a uniform pick between 0 and the ceiling)
   * spreads a crowd of clients best: after a server restart their
   * attempts arrive evenly over the window instead of in waves.
   * @param {number} failures
   */
  backoffDelay(failures) {
    const ceiling = this.backoffCeiling(failures);
    return this.options.jitter ? Math.floor(Math.random() * ceiling) : ceiling;
  }

  // -- one socket's life ------------------------------------------------

  _open() {
    this.retryAt = null;
    this.attempts += 1;
    this._healthy = false;
    this._opened = false;
    this._inFlight = null;
    this.connectionId = null;
    this._setState('connecting');
    this._emit('connecting', { attempt: this.attempts, url: this.url });

    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      if (typeof WS !== 'function') {
        throw new TypeError('no WebSocket: pass options.WebSocket (e.g. the ws package)');
      }
      ws = this.options.protocols === undefined
        ? new WS(this.url) : new WS(this.url, this.options.protocols);
    } catch (err) {
      // A malformed URL throws at once; retrying cannot fix it.
      this._setState('closed');
      this._stop({ code: null, reason: 'invalid', detail: String(err), permanent: true });
      return;
    }
    this._ws = ws;

    // A connect that hangs (a dropped SYN, a proxy that never answers)
    // can take the browser minutes to give up on; closing a CONNECTING
    // socket fails it at once, and the close handler takes it from there.
    this._setTimer('connect', this.options.connectTimeout, () => {
      if (this._ws === ws && ws.readyState === CONNECTING) ws.close();
    });

    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ev);
    // An error is always followed by a close event, which does the work.
    ws.onerror = () => {};
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason, ev.wasClean);
  }

  _onOpen(ws) {
    if (this._ws !== ws) return;
    this._clearTimer('connect');
    this._opened = true;
    this._setState('open');
    this._emit('open', { attempt: this.attempts });
    // A new connection has no subscriptions but ours: nothing left over.
    this._left.clear();
    // Channels first, then what the application queued: a message it
    // sent while disconnected may be about a channel it subscribed to.
    this._resubscribe();
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) this._send(item.text, item.req);
    // The first ping goes out at once: it measures the RTT straight away
    // and proves the link works before the backoff is reset.
    this._startPings();
  }

  _onMessage(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return; // wsplugd only sends JSON; anything else is not for us
    }
    if (msg === null || typeof msg !== 'object') return;
    if (msg.type === 'pong' && typeof msg.id === 'string' && msg.id.startsWith('~ping:')) {
      // Ours; one for an older ping (answered after its deadline) is
      // late news and not the application's either.
      if (this._inFlight && msg.id === this._inFlight.id) this._onPong(msg);
      return;
    }
    if (msg.type === 'connection_established') {
      this.connectionId = msg.connectionId;
      this._emit('established', {
        connectionId: msg.connectionId,
        timestamp: msg.timestamp,
      });
    }
    if ((msg.type === 'subscribed' || msg.type === 'error') &&
        typeof msg.id === 'string' && msg.id.startsWith('~sub:')) {
      this._onSubscribeReply(msg);
      return;
    }
    if (msg.id !== undefined && this._pending.has(msg.id)) {
      const err = msg.type === 'error'
        ? new WsplugdError(String(msg.code ?? 'error'), String(msg.message ?? 'error reply'), msg)
        : null;
      this._settle(msg.id, err, msg);
      return;
    }
    if (msg.type === 'message' && typeof msg.channel === 'string') {
      if (this._left.has(msg.channel)) return; // sent before it heard we left
      const ch = this._channels.get(msg.channel);
      if (ch && !ch.cursor.accept(msg)) return; // seen before a reconnect
    }
    this._emit('message', msg);
  }

  // -- pings ------------------------------------------------------------

  _startPings() {
    if (!this._isOpen() || (this.paused && this._hidden())) return;
    this._ping();
    this._setInterval('ping', this.options.pingInterval, () => this._ping());
  }

  _stopPings() {
    for (const name of ['ping', 'pong']) this._clearTimer(name);
    this._inFlight = null;
  }

  // One ping in flight at a time: with the defaults an answer is due long
  // before the next ping, and one outstanding ping keeps the RTT honest.
  _ping() {
    if (this._inFlight || !this._isOpen()) return;
    const seq = ++this._pingSeq;
    const id = `~ping:${seq}`;
    this._inFlight = { id, seq, sentAt: performance.now() };
    this._ws.send(JSON.stringify({ type: 'ping', id }));
    this._emit('ping', { id, seq });
    this._setTimer('pong', this.options.pongTimeout, () => this._deadLink(id));
  }

  _onPong(msg) {
    const rtt = performance.now() - this._inFlight.sentAt;
    const { seq } = this._inFlight;
    this._inFlight = null;
    this._clearTimer('pong');
    this.lastRtt = rtt;
    this._healthy = true;
    this._emit('pong', { id: msg.id, seq, rtt });
  }

  // TCP can keep a dead link "open" for many minutes (a laptop lid shut,
  // a NAT entry expired); the missing pong is how we find out.
  _deadLink(id) {
    this._emit('deadlink', { id, timeout: this.options.pongTimeout });
    // 4000-4999 are for applications; the server logs the code it got.
    this._drop(4000, 'pong timeout');
  }

  // -- closing and retrying ---------------------------------------------

  // Close our socket and make sure it is gone before another is made.  A
  // socket closed over a dead link may take the browser a long time to
  // report as closed; after closeTimeout it is disowned instead (all its
  // handlers removed, so it can never deliver anything) and treated as
  // closed.
  _drop(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._clearTimer('connect');
    this._stopPings();
    try {
      ws.close(code, reason);
    } catch {
      ws.close(); // a CONNECTING socket takes no code
    }
    this._setTimer('closewait', this.options.closeTimeout, () => {
      if (this._ws === ws) this._onClose(ws, 1006, 'close timed out', false);
    });
  }

  async _onClose(ws, code, reason, wasClean) {
    if (this._ws !== ws) return; // a socket we already disowned
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    this._ws = null;
    this._clearTimer('connect');
    this._clearTimer('closewait');
    this._stopPings();
    this.connectionId = null;
    this._setState('closed');
    // What was sent on this socket and not answered will never be.
    for (const [id, req] of this._pending) {
      if (req.ws === ws) {
        this._settle(id, new WsplugdError('closed', `connection closed (${code}) before the reply`));
      }
    }
    for (const ch of this._channels.values()) ch.confirmed = false;

    if (this.stopped || !this._started) {
      this._emit('close', { code, reason, wasClean, reconnect: false, delay: null });
      return;
    }
    if (STOP_CODES.has(code)) {
      this._emit('close', { code, reason, wasClean, reconnect: false, delay: null });
      this._stop({ code, reason, permanent: true });
      return;
    }

    // A handshake that failed before open: the browser will not say why,
    // so ask the server, once, before deciding.
    let verdict = null;
    if (!this._opened && this.options.probe) {
      this._probing = true;
      try {
        verdict = await this._probe();
      } finally {
        this._probing = false;
      }
      if (this.stopped || !this._started || this._ws) return; // overtaken
      this._emit('probe', verdict);
      if (verdict.permanent) {
        this._emit('close', { code, reason, wasClean, reconnect: false, delay: null });
        this._stop({
          code, reason: verdict.reason, status: verdict.status,
          detail: verdict.detail, permanent: true,
        });
        return;
      }
    }

    // A socket that answered a ping proved the whole path works, so the
    // next attempt starts from the base again; one that never did counts
    // as another failure and the wait doubles.
    if ((this._healthy && !TROUBLE_CODES.has(code)) ||
        (this._opened && PROMPT_CODES.has(code))) {
      this._failures = 0;
    }
    const hint = closeRetryHint(code, reason) ?? verdict?.retryAfter ?? null;
    // One clock reading for the hint and the wait it sets: read twice, a
    // millisecond between them made the wait a millisecond short of the
    // hint it reports obeying.
    const now = Date.now();
    if (hint !== null) {
      this._notBefore = now + Math.min(hint, this.options.retryAfterCap);
    }
    // Paused, nothing is scheduled: resuming will.
    const delay = this.paused ? null : this._nextDelay(now);
    this._failures += 1;
    this._emit('close', { code, reason, wasClean, reconnect: true, delay });
    this._scheduleRetry(delay, hint !== null ? 'retry_after' : 'backoff');
  }

  // The backoff step, never ending before a server hint allows: the hint
  // is a floor, and the jitter is added on top of it so that the clients
  // the hint was sent to do not all come back in the same instant.
  _nextDelay(now = Date.now()) {
    const delay = this.backoffDelay(this._failures);
    const wait = this._notBefore - now;
    return wait > 0 ? Math.ceil(wait) + delay : delay;
  }

  _scheduleRetry(delay, why) {
    if (this.paused || delay === null) {
      // The retry waits for the page to be visible and online; _resume()
      // schedules it then, still jittered.
      this.retryAt = null;
      return;
    }
    this.retryAt = Date.now() + delay;
    this._emit('retry', { attempt: this.attempts + 1, delay, reason: why });
    this._setTimer('retry', delay, () => {
      this.retryAt = null;
      if (!this.stopped && this._started && !this._ws && !this.paused) this._open();
    });
  }

  // -- the probe ----------------------------------------------------------

  /**
   * Why did the handshake fail?  The discovery document first: from
   * wsplugd it lists the retired paths (ours among them: permanent,
   * 'gone'), names the endpoint's path (another path: permanent) or is
   * refused with 403 (the page's origin: permanent) or 503 (full or
   * restarting: the Retry-After is a hint).  When it is not there (not
   * wsplugd at this host, or a proxy that forwards only the endpoint) the
   * endpoint's own URL, fetched plainly: 404, 410, 403 or 401 are
   * permanent, anything else is not.  A probe that fails (server down,
   * CORS, timeout) proves nothing: transient.
   * @returns {Promise<{permanent: boolean, status: number | null,
   *   reason?: string, detail?: string, retryAfter: number | null,
   *   endpoint?: string}>}
   */
  async _probe() {
    const transient = { permanent: false, status: null, retryAfter: null };
    const fetchFn = this.options.fetch ?? globalThis.fetch;
    if (typeof fetchFn !== 'function') return transient;
    let url;
    try {
      url = new URL(this.url);
    } catch {
      return transient;
    }
    const scheme = url.protocol === 'wss:' ? 'https:' : 'http:';
    const base = `${scheme}//${url.host}`;
    const get = async (target) => {
      try {
        return await fetchFn(target, {
          method: 'GET', cache: 'no-store', credentials: 'omit',
          redirect: 'manual', signal: AbortSignal.timeout(this.options.probeTimeout),
        });
      } catch {
        return null;
      }
    };
    const verdict = (res, extra = {}) => {
      const status = res ? res.status : null;
      const retryAfter = status === 503 ? parseRetryAfter(res.headers.get('retry-after')) : null;
      if (PERMANENT_STATUS.has(status)) {
        return { permanent: true, status, reason: PERMANENT_STATUS.get(status), retryAfter, ...extra };
      }
      return { permanent: false, status, retryAfter, ...extra };
    };

    const res = await get(base + WELL_KNOWN);
    if (res && res.status === 200) {
      const doc = await res.json().catch(() => null);
      if (doc && doc.service === 'wsplugd' && typeof doc.endpoint === 'string') {
        // The server says this path was retired for good ([server] gone).
        if (Array.isArray(doc.gone) && doc.gone.includes(url.pathname)) {
          return {
            permanent: true, status: 410, reason: 'gone', retryAfter: null,
            endpoint: doc.endpoint,
            detail: `${url.pathname} is gone; this server's endpoint is ${doc.endpoint}`,
          };
        }
        if (doc.endpoint !== url.pathname) {
          return {
            permanent: true, status: 404, reason: 'not_found', retryAfter: null,
            endpoint: doc.endpoint,
            detail: `no endpoint at ${url.pathname}; this server's is ${doc.endpoint}`,
          };
        }
        return { ...transient, status: 200, endpoint: doc.endpoint };
      }
    } else if (res && (res.status === 503 || res.status === 403 || res.status === 401)) {
      return verdict(res, { detail: `${WELL_KNOWN} answered ${res.status}` });
    }
    const direct = await get(base + url.pathname + url.search);
    if (!direct) return transient;
    return verdict(direct, { detail: `${url.pathname} answered ${direct.status}` });
  }

  // -- pausing ------------------------------------------------------------

  _hidden() {
    const doc = globalThis.document;
    return this.options.pauseWhenHidden && !!doc && doc.visibilityState === 'hidden';
  }

  _offline() {
    const nav = globalThis.navigator;
    return this.options.pauseWhenOffline && !!nav && nav.onLine === false;
  }

  // Browser only: follow visibility and connectivity while started.
  _watchEnvironment() {
    if (this._env) return;
    const doc = globalThis.document;
    const win = globalThis.window;
    const update = () => this._updatePause();
    this._env = { doc, win, update };
    if (doc && typeof doc.addEventListener === 'function') {
      doc.addEventListener('visibilitychange', update);
    }
    if (win && typeof win.addEventListener === 'function') {
      win.addEventListener('online', update);
      win.addEventListener('offline', update);
    }
    this._updatePause();
  }

  _unwatchEnvironment() {
    const env = this._env;
    if (!env) return;
    this._env = null;
    if (env.doc && typeof env.doc.removeEventListener === 'function') {
      env.doc.removeEventListener('visibilitychange', env.update);
    }
    if (env.win && typeof env.win.removeEventListener === 'function') {
      env.win.removeEventListener('online', env.update);
      env.win.removeEventListener('offline', env.update);
    }
  }

  _updatePause() {
    const hidden = this._hidden();
    const offline = this._offline();
    const paused = hidden || offline;
    const why = offline ? 'offline' : 'hidden';
    if (paused && !this.paused) {
      this.paused = true;
      // No attempt while paused; an open socket stays open (it still
      // receives) but, while hidden, sends no pings: a background tab's
      // timers are throttled and a late pong would be taken for a dead link.
      if (this._timers.retry !== undefined) this._clearTimer('retry');
      this.retryAt = null;
      if (hidden) this._stopPings();
      this._emit('pause', { reason: why });
    } else if (!paused && this.paused) {
      this.paused = false;
      this._emit('resume', { reason: this._pauseReason ?? why });
      this._resume();
    } else if (paused && hidden) {
      this._stopPings();
    }
    this._pauseReason = paused ? why : null;
  }

  // Back from hidden or offline.  An open socket is checked at once with a
  // ping; with none, the next attempt is scheduled within [0, backoffBase)
  // (after any server hint), not made at once: every tab of a laptop that
  // wakes up, or of a whole office whose network returns, would otherwise
  // arrive in the same instant.
  _resume() {
    if (this.stopped || !this._started) return;
    if (this._ws) {
      // Is the link still there after the pause?  Ask now.
      if (this._isOpen() && !this._timers.ping) this._startPings();
      else if (this._isOpen()) this._ping();
      return;
    }
    if (this._probing || this._timers.retry !== undefined) return;
    const { backoffBase, jitter } = this.options;
    const spread = jitter ? Math.floor(Math.random() * backoffBase) : backoffBase;
    const wait = this._notBefore - Date.now();
    this._scheduleRetry((wait > 0 ? Math.ceil(wait) : 0) + spread, 'resume');
  }

  // -- queue, requests and channels -------------------------------------

  _isOpen() {
    return !!this._ws && this._ws.readyState === OPEN && this._opened;
  }

  _send(text, req) {
    if (this.stopped) {
      this._emit('error', { code: 'stopped', message: 'the client is stopped; message not sent', data: text });
      return false;
    }
    if (this._isOpen()) {
      this._ws.send(text);
      if (req) req.ws = this._ws;
      return true;
    }
    if (this._queue.length >= this.options.queueLimit) {
      this._emit('error', {
        code: 'queue_full',
        message: `send queue full (${this.options.queueLimit} messages); message not queued`,
        data: text,
      });
      return false;
    }
    this._queue.push({ text, req });
    return true;
  }

  _unqueue(req) {
    this._queue = this._queue.filter((item) => item.req !== req);
  }

  _settle(id, err, reply) {
    const req = this._pending.get(id);
    if (!req) return;
    this._pending.delete(id);
    clearTimeout(req.timer);
    if (err) req.reject(err);
    else req.resolve(reply);
  }

  _subscribeNow(channel, ch) {
    const resume = ch.cursor.resume();
    const msg = { type: 'subscribe', channel, ...resume, id: `~sub:${channel}` };
    this._ws.send(JSON.stringify(msg));
    return resume;
  }

  _resubscribe() {
    for (const [channel, ch] of this._channels) {
      const resume = this._subscribeNow(channel, ch);
      ch.resumeFrom = resume.since ?? null;
    }
  }

  _onSubscribeReply(msg) {
    const channel = msg.id.slice('~sub:'.length);
    const ch = this._channels.get(channel);
    if (!ch) return; // unsubscribed meanwhile
    if (msg.type === 'error') {
      this._channels.delete(channel);
      const err = new WsplugdError(String(msg.code ?? 'error'), String(msg.message ?? 'subscribe refused'), msg);
      for (const w of ch.waiters) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      ch.waiters = [];
      this._emit('error', { code: err.code, message: `subscribe ${channel}: ${err.message}`, data: msg });
      return;
    }
    const again = ch.everConfirmed === true;
    ch.confirmed = true;
    ch.everConfirmed = true;
    ch.cursor.position(msg);
    if (again) {
      // recovered: the server says it replays from `since` (a server with
      // history); null when it does not say, as today's broadcast plugin.
      this._emit('resubscribed', {
        channel, since: ch.resumeFrom ?? null,
        recovered: typeof msg.recovered === 'boolean' ? msg.recovered : null,
        reply: msg,
      });
    }
    this._resolveWaiters(ch, msg);
  }

  _resolveWaiters(ch, reply) {
    const waiters = ch.waiters;
    ch.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(reply);
    }
  }

  // -- stopping -----------------------------------------------------------

  _stop(info) {
    const wasStopped = this.stopped;
    this.stopped = true;
    this._started = false;
    this._clearTimer('retry');
    this.retryAt = null;
    this._unwatchEnvironment();
    this.paused = false;
    const err = new WsplugdError('stopped', `client stopped: ${info.reason}`);
    for (const id of [...this._pending.keys()]) this._settle(id, err);
    for (const ch of this._channels.values()) {
      for (const w of ch.waiters) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      ch.waiters = [];
    }
    this._queue = [];
    if (this._ws) this._drop(info.code ?? 1000, info.reason ?? '');
    else this._setState('closed');
    if (!wasStopped) this._emit('stopped', { status: null, permanent: false, detail: null, ...info });
  }

  // -- helpers ------------------------------------------------------------

  // Named timers, so that every path out of a socket can cancel exactly
  // the ones it owns and none can fire twice.
  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = {
      id: setTimeout(() => {
        delete this._timers[name];
        fn();
      }, ms),
      interval: false,
    };
  }

  _setInterval(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = { id: setInterval(fn, ms), interval: true };
  }

  _clearTimer(name) {
    const t = this._timers[name];
    if (t === undefined) return;
    if (t.interval) clearInterval(t.id);
    else clearTimeout(t.id);
    delete this._timers[name];
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  _emit(type, detail) {
    this.dispatchEvent(new ClientEvent(type, detail));
  }
}
