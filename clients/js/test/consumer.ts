// A TypeScript consumer of wsplugd-client: `tsc --noEmit -p test` must
// accept this file as written and reject each misuse marked below (an
// expected error that does not happen is itself an error), so that the
// declarations are held to what the README promises.
import {
  WsplugdClient, WsplugdError, ChannelCursor, parseRetryAfter, closeRetryHint,
  type WsplugdClientOptions, type WsplugdMessage, type WsplugdState,
} from 'wsplugd-client';

const options: WsplugdClientOptions = {
  pingInterval: 25000, pongTimeout: 10000, backoffBase: 1000, backoffCap: 30000,
  jitter: true, queueLimit: 100, requestTimeout: 5000, pauseWhenHidden: true,
  pauseWhenOffline: true, probe: true, probeTimeout: 2000, retryAfterCap: 60000,
};
const client = new WsplugdClient('wss://example.org/ws', options);

client.addEventListener('state', (e) => {
  const s: WsplugdState = e.detail.state;
  console.log(s, e.detail.previous);
});
client.addEventListener('message', (e) => {
  const m: WsplugdMessage = e.detail;
  if (m.type === 'message') console.log(m.channel);
});
client.addEventListener('close', (e) => {
  const d: number | null = e.detail.delay;
  console.log(e.detail.code, e.detail.reconnect, d);
});
client.addEventListener('stopped', (e) => {
  if (e.detail.permanent && e.detail.status === 404) console.log(e.detail.detail);
});
client.addEventListener('error', (e) => console.log(e.detail.code === 'queue_full'));
client.addEventListener('retry', (e) => console.log(e.detail.reason, e.detail.delay));
client.addEventListener('resubscribed', (e) => console.log(e.detail.since, e.detail.recovered));
client.addEventListener('pause', (e) => console.log(e.detail.reason));

client.connect();
const sent: boolean = client.send({ type: 'ping' });

async function main(): Promise<void> {
  const pong = await client.request<{ type: 'pong'; timestamp: number }>({ type: 'ping' });
  console.log(pong.timestamp);
  await client.subscribe('news');
  const ack: WsplugdMessage = await client.publish('news', { text: 'hi' }, { ack: true });
  const queued: boolean = client.publish('news', 'fire and forget');
  console.log(ack, queued, client.channels.length, client.queued);
  try {
    await client.request({ type: 'nope' }, { timeout: 10 });
  } catch (err) {
    if (err instanceof WsplugdError) console.log(err.code, err.reply?.type);
  }
  await client.unsubscribe('news');
}
void main();

const cursor = new ChannelCursor();
const fresh: boolean = cursor.accept({ offset: 3, epoch: 'e1' });
const ms: number | null = parseRetryAfter('5') ?? closeRetryHint(1013, '{"retry_after_ms":100}');
console.log(sent, fresh, ms, cursor.resume().since);

// @ts-expect-error: the state is one of three strings
const bad: WsplugdState = 'reconnecting';
// @ts-expect-error: unknown option
new WsplugdClient('ws://x/ws', { retries: 3 });
// @ts-expect-error: the close detail has no 'status'
client.addEventListener('close', (e) => console.log(e.detail.status));
// @ts-expect-error: request() takes an object
void client.request('ping');
console.log(bad);
