// wsplugd-client.js — a browser client for wsplugd, as a dependency-free
// ES module.  Copy it into a front end as it is:
//
//   import { WsplugdClient } from './wsplugd-client.js';
//   const client = new WsplugdClient('wss://example.org/ws');
//   client.addEventListener('state', (e) => render(e.detail.state));
//   client.addEventListener('message', (e) => handle(e.detail));
//   client.connect();
//
// It exists because of the failure wsplugd was written against: a page
// that asks for /ws, gets no proper answer and retries forever, as fast as
// it can.  This client keeps one socket, proves the link is alive with an
// application-level ping, and when it has to reconnect it waits longer
// after each failure, with jitter, so that neither one page nor a thousand
// pages after a server restart hammer the server.
//
// State is one of 'connecting' (a socket is being opened), 'open' (the
// socket is open) or 'closed' (no socket: waiting for the next attempt, or
// stopped for good — see `stopped` and `retryAt`).
//
// Events (CustomEvent; the payload is in `event.detail`):
//   state        {state, previous}             every state change
//   connecting   {attempt, url}                a socket is being opened
//   open         {attempt}                     the socket opened (101)
//   established  {connectionId, timestamp}     wsplugd greeted this socket
//   message      the parsed JSON object        every message but pongs
//   ping         {id}                          an application ping was sent
//   pong         {id, rtt}                     ... and answered, rtt in ms
//   deadlink     {id, timeout}                 a pong did not come in time
//   close        {code, reason, wasClean, reconnect, delay}
//   retry        {attempt, delay}              the next attempt is scheduled
//   stopped      {code, reason}                no more attempts will be made

const DEFAULTS = {
  pingInterval: 25000, // ms between application pings
  pongTimeout: 10000, // ms a ping may stay unanswered before the link is dead
  backoffBase: 1000, // ms: the first retry waits up to this long
  backoffCap: 30000, // ms: no retry ever waits longer than this
  jitter: true, // full jitter; false gives the plain doubling schedule
  connectTimeout: 10000, // ms a socket may stay in CONNECTING
  closeTimeout: 2000, // ms to wait for a socket we closed to report closed
  protocols: undefined, // Sec-WebSocket-Protocol offer, if any
};

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

export class WsplugdClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.state = 'closed';
    this.stopped = true; // until connect() is called
    this.connectionId = null;
    this.lastRtt = null; // ms, of the last answered ping
    this.attempts = 0; // sockets opened so far, successful or not
    this.retryAt = null; // Date.now() of the next attempt, while waiting

    this._ws = null; // the one socket; a new one is made only when null
    this._failures = 0; // consecutive failures: the backoff exponent
    this._healthy = false; // this socket has answered a ping
    this._opened = false; // this socket got past the handshake
    this._pingSeq = 0;
    this._inFlight = null; // {id, sentAt} of the unanswered ping
    this._timers = {}; // name -> {id, interval}; see _setTimer
  }

  // Start connecting, and keep connected until close() or a 1008.
  connect() {
    this.stopped = false;
    // Already connected, connecting or waiting for a scheduled retry: the
    // socket or the timer will get there; a second socket never.
    if (this._ws || this._timers.retry !== undefined) return;
    this._open();
  }

  // Stop for good: close the socket, cancel any retry.
  close(code = 1000, reason = 'client closing') {
    this.stopped = true;
    this._clearTimer('retry');
    this.retryAt = null;
    if (this._ws) this._drop(code, reason);
    else this._setState('closed');
    this._emit('stopped', { code, reason });
  }

  // Send a JSON message; false when there is no open socket to take it.
  // Nothing is queued: after a reconnect the application decides what to
  // send again, since the server may have lost what was in flight.
  send(message) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    this._ws.send(typeof message === 'string' ? message : JSON.stringify(message));
    return true;
  }

  // The delay before the next attempt after `failures` consecutive
  // failures.  Full jitter (a uniform pick between 0 and the exponential
  // ceiling) spreads a crowd of clients best: after a server restart their
  // attempts arrive evenly over the window instead of in waves.
  backoffDelay(failures) {
    const { backoffBase, backoffCap, jitter } = this.options;
    // The exponent stops growing long before 2 ** n could overflow: a
    // day-long outage must not turn the delay into Infinity or NaN.
    const ceiling = Math.min(backoffCap, backoffBase * 2 ** Math.min(failures, 30));
    return jitter ? Math.floor(Math.random() * ceiling) : ceiling;
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

    let ws;
    try {
      ws = new WebSocket(this.url, this.options.protocols);
    } catch (err) {
      // A malformed URL throws at once; retrying cannot fix it.
      this.stopped = true;
      this._setState('closed');
      this._emit('stopped', { code: null, reason: String(err) });
      return;
    }
    this._ws = ws;

    // A connect that hangs (a dropped SYN, a proxy that never answers)
    // can take the browser minutes to give up on; closing a CONNECTING
    // socket fails it at once, and the close handler takes it from there.
    this._setTimer('connect', this.options.connectTimeout, () => {
      if (this._ws === ws && ws.readyState === WebSocket.CONNECTING) ws.close();
    });

    ws.onopen = () => {
      this._clearTimer('connect');
      this._opened = true;
      this._setState('open');
      this._emit('open', { attempt: this.attempts });
      // The first ping goes out at once: it measures the RTT straight
      // away and proves the link works before the backoff is reset.
      this._ping();
      this._setInterval('ping', this.options.pingInterval, () => this._ping());
    };
    ws.onmessage = (ev) => this._onMessage(ev);
    // An error is always followed by a close event, which does the work.
    ws.onerror = () => {};
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason, ev.wasClean);
  }

  _onMessage(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return; // wsplugd only sends JSON; anything else is not for us
    }
    if (msg === null || typeof msg !== 'object') return;
    if (msg.type === 'pong') {
      this._onPong(msg);
      return;
    }
    if (msg.type === 'connection_established') {
      this.connectionId = msg.connectionId;
      this._emit('established', {
        connectionId: msg.connectionId,
        timestamp: msg.timestamp,
      });
    }
    this._emit('message', msg);
  }

  // One ping in flight at a time: with the defaults an answer is due long
  // before the next ping, and one outstanding ping keeps the RTT honest.
  _ping() {
    if (this._inFlight) return;
    const id = ++this._pingSeq;
    this._inFlight = { id, sentAt: performance.now() };
    this.send({ type: 'ping', id });
    this._emit('ping', { id });
    this._setTimer('pong', this.options.pongTimeout, () => this._deadLink(id));
  }

  _onPong(msg) {
    // wsplugd echoes the ping's id; a pong for an older ping is late news.
    if (!this._inFlight || msg.id !== this._inFlight.id) return;
    const rtt = performance.now() - this._inFlight.sentAt;
    this._inFlight = null;
    this._clearTimer('pong');
    this.lastRtt = rtt;
    this._healthy = true;
    this._emit('pong', { id: msg.id, rtt });
  }

  // TCP can keep a dead link "open" for many minutes (a laptop lid shut,
  // a NAT entry expired); the missing pong is how we find out.
  _deadLink(id) {
    this._emit('deadlink', { id, timeout: this.options.pongTimeout });
    // 4000-4999 are for applications; the server logs the code it got.
    this._drop(4000, 'pong timeout');
  }

  // Close our socket and make sure it is gone before another is made.  A
  // socket closed over a dead link may take the browser a long time to
  // report as closed; after closeTimeout it is disowned instead (all its
  // handlers removed, so it can never deliver anything) and treated as
  // closed.
  _drop(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._stopSocketTimers();
    try {
      ws.close(code, reason);
    } catch {
      ws.close(); // a CONNECTING socket takes no code
    }
    this._setTimer('closewait', this.options.closeTimeout, () => {
      if (this._ws === ws) this._onClose(ws, 1006, 'close timed out', false);
    });
  }

  _onClose(ws, code, reason, wasClean) {
    if (this._ws !== ws) return; // a socket we already disowned
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    this._ws = null;
    this._stopSocketTimers();
    this._clearTimer('closewait');
    this.connectionId = null;
    this._setState('closed');

    const reconnect = !this.stopped && !STOP_CODES.has(code);
    if (!reconnect) {
      this._emit('close', { code, reason, wasClean, reconnect: false, delay: null });
      if (!this.stopped) {
        this.stopped = true;
        this._emit('stopped', { code, reason });
      }
      return;
    }

    // A socket that answered a ping proved the whole path works, so the
    // next attempt starts from the base again; one that never did counts
    // as another failure and the wait doubles.
    if ((this._healthy && !TROUBLE_CODES.has(code)) ||
        (this._opened && PROMPT_CODES.has(code))) {
      this._failures = 0;
    }
    const delay = this.backoffDelay(this._failures);
    this._failures += 1;
    this._emit('close', { code, reason, wasClean, reconnect: true, delay });
    this._scheduleRetry(delay);
  }

  _scheduleRetry(delay) {
    this.retryAt = Date.now() + delay;
    this._emit('retry', { attempt: this.attempts + 1, delay });
    this._setTimer('retry', delay, () => {
      delete this._timers.retry;
      if (!this.stopped && !this._ws) this._open();
    });
  }

  // -- helpers ------------------------------------------------------------

  _stopSocketTimers() {
    for (const name of ['connect', 'ping', 'pong']) this._clearTimer(name);
    this._inFlight = null;
  }

  // Named timers, so that every path out of a socket can cancel exactly
  // the ones it owns and none can fire twice.
  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = { id: setTimeout(fn, ms), interval: false };
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
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
