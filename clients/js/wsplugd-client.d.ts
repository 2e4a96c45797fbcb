// Type declarations for wsplugd-client (hand-written; README.md has the
// prose).  Checked by `tsc --noEmit` on test/consumer.ts.

/** The WebSocket constructor the client uses: the browser's, Node 22's
 * global, or e.g. the `ws` package's on Node 18. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface WsplugdClientOptions {
  /** WebSocket constructor; default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** fetch() for the failure probe; default globalThis.fetch. */
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
  /** Sec-WebSocket-Protocol offer. */
  protocols?: string | string[];
  /** ms between application pings (default 25000). */
  pingInterval?: number;
  /** ms a ping may stay unanswered before the link counts as dead (10000). */
  pongTimeout?: number;
  /** ms: the first retry waits up to this long (1000). */
  backoffBase?: number;
  /** ms: no backoff step waits longer (30000). */
  backoffCap?: number;
  /** Full jitter (true); false gives the plain doubling schedule. */
  jitter?: boolean;
  /** ms: longer server retry hints are cut to this (300000). */
  retryAfterCap?: number;
  /** ms a socket may stay CONNECTING (10000). */
  connectTimeout?: number;
  /** ms to wait for a socket we closed to report closed (2000). */
  closeTimeout?: number;
  /** Messages held while not open (1000); beyond: an 'error' event. */
  queueLimit?: number;
  /** ms request() and subscribe() wait for their reply (10000). */
  requestTimeout?: number;
  /** Probe with fetch() after a handshake that failed before open (true). */
  probe?: boolean;
  /** ms each probe request may take (5000). */
  probeTimeout?: number;
  /** No retries and no pings while document.visibilityState is hidden (true). */
  pauseWhenHidden?: boolean;
  /** No retries while navigator.onLine is false (true). */
  pauseWhenOffline?: boolean;
}

export type WsplugdState = 'connecting' | 'open' | 'closed';

/** A JSON message from the server. */
export interface WsplugdMessage {
  type?: string;
  id?: string | number;
  [key: string]: unknown;
}

export interface ProbeVerdict {
  permanent: boolean;
  /** HTTP status the verdict rests on; null when the probe got none
   * (410 when the discovery document lists the path in `gone`). */
  status: number | null;
  /** 'not_found', 'gone', 'forbidden', 'unauthorized' when permanent. */
  reason?: string;
  detail?: string;
  /** ms from a 503's Retry-After. */
  retryAfter: number | null;
  /** The endpoint path the discovery document names. */
  endpoint?: string;
}

export interface WsplugdEventMap {
  state: { state: WsplugdState; previous: WsplugdState };
  connecting: { attempt: number; url: string };
  open: { attempt: number };
  established: { connectionId: string; timestamp: unknown };
  message: WsplugdMessage;
  ping: { id: string; seq: number };
  pong: { id: string; seq: number; rtt: number };
  deadlink: { id: string; timeout: number };
  close: { code: number; reason: string; wasClean: boolean; reconnect: boolean; delay: number | null };
  retry: { attempt: number; delay: number; reason: 'backoff' | 'retry_after' | 'resume' };
  probe: ProbeVerdict;
  stopped: {
    code: number | null;
    reason: string;
    status: number | null;
    permanent: boolean;
    detail: string | null;
  };
  error: { code: string; message: string; data?: unknown };
  pause: { reason: 'hidden' | 'offline' };
  resume: { reason: 'hidden' | 'offline' };
  resubscribed: { channel: string; since: number | null; recovered: boolean | null; reply: WsplugdMessage };
}

/** The events the client dispatches: `detail` holds the payload. */
export interface WsplugdEvent<T> extends Event {
  readonly detail: T;
}

export class WsplugdError extends Error {
  constructor(code: string, message: string, reply?: WsplugdMessage);
  readonly code: string;
  /** The server's {"type":"error"} reply, when that is the cause. */
  readonly reply?: WsplugdMessage;
}

export class WsplugdClient extends EventTarget {
  constructor(url: string, options?: WsplugdClientOptions);
  readonly url: string;
  readonly options: Readonly<Required<Omit<WsplugdClientOptions, 'WebSocket' | 'fetch' | 'protocols'>>> &
    Pick<WsplugdClientOptions, 'WebSocket' | 'fetch' | 'protocols'>;
  readonly state: WsplugdState;
  /** True after close() or a permanent failure; connect() starts afresh. */
  readonly stopped: boolean;
  /** True while hidden or offline: no attempts are made. */
  readonly paused: boolean;
  readonly connectionId: string | null;
  /** ms, the round trip of the last answered ping. */
  readonly lastRtt: number | null;
  /** Sockets opened so far. */
  readonly attempts: number;
  /** Date.now() of the next attempt while one is scheduled. */
  readonly retryAt: number | null;
  /** Messages waiting for an open socket. */
  readonly queued: number;
  /** Channels kept subscribed across reconnects. */
  readonly channels: string[];

  connect(): void;
  close(code?: number, reason?: string): void;
  reconnect(): void;
  /** Sent, or queued until open: true; refused (with an 'error' event): false. */
  send(message: unknown): boolean;
  request<R extends WsplugdMessage = WsplugdMessage>(
    message: Record<string, unknown>, opts?: { timeout?: number }): Promise<R>;
  subscribe(channel: string, opts?: { timeout?: number }): Promise<WsplugdMessage>;
  unsubscribe(channel: string): Promise<WsplugdMessage | null>;
  publish(channel: string, data: unknown, opts: { ack: true; timeout?: number }): Promise<WsplugdMessage>;
  publish(channel: string, data: unknown, opts?: { ack?: false }): boolean;
  backoffCeiling(failures: number): number;
  backoffDelay(failures: number): number;

  addEventListener<K extends keyof WsplugdEventMap>(
    type: K, listener: (ev: WsplugdEvent<WsplugdEventMap[K]>) => void,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WsplugdEventMap>(
    type: K, listener: (ev: WsplugdEvent<WsplugdEventMap[K]>) => void,
    options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions): void;
}

/** Delivery bookkeeping of one channel (offset and epoch seen). */
export class ChannelCursor {
  offset: number | null;
  epoch: unknown;
  accept(msg: { offset?: unknown; epoch?: unknown }): boolean;
  position(reply: { offset?: unknown; epoch?: unknown }): void;
  resume(): { since?: number; epoch?: unknown };
}

/** Retry-After (seconds or an HTTP date) in ms; null if absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now?: number): number | null;
/** retry_after_ms from a 1012/1013 close reason of JSON; null otherwise. */
export function closeRetryHint(code: number, reason: string): number | null;
