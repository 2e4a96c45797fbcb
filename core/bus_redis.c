/*
 * bus_redis.c: the Redis backend of the bus, for several daemons that
 * share channels through one Redis (7, Debian's redis-server).
 *
 * Each daemon (a node) keeps two connections to Redis through hiredis's
 * libevent adapter: a command connection and a subscriber connection,
 * which SUBSCRIBEs once per channel that has members in this process and
 * UNSUBSCRIBEs when the last leaves.  Redis is the one place that numbers
 * a channel's messages; every node gets each message once on its
 * subscriber connection, in the order Redis ran the publishes, and hands
 * it to the front (bus.c), which gives it to each local member once.  A
 * node's own publishes come back to it the same way: there is no local
 * short cut that could overtake an earlier message.
 *
 * Keys, under [bus] redis_prefix P and per channel C:
 *
 *   P m:C   hash: top (the last offset given) and epoch (random, made by
 *           whichever script finds it missing, e.g. after a FLUSHALL or
 *           an expiry, and then the history is dropped with it)
 *   P s:C   stream: the history, entry id OFFSET-0, capped at
 *           history_size (exact MAXLEN) and expiring history_ttl after
 *           the channel's last publish
 *   P p:C   sorted set: presence, member NODE:CONN, score its expiry in
 *           Redis's own clock (TIME), refreshed every
 *           redis_presence_ttl/3; expired members are removed on read,
 *           so a node that dies leaves no ghost for longer than the ttl
 *   P c:C   the pub/sub name
 *
 * Publish and append to history are one step: a Lua script (EVALSHA,
 * loaded at connect, EVAL again on NOSCRIPT) HINCRBYs the offset, XADDs
 * the message, sets the expiries and PUBLISHes "W1 OFFSET EPOCH ORIGIN
 * FLAG EXCEPT\n" and the data, so offsets never skip or repeat and every
 * node sees them in order.  The hash outlives the stream (presence
 * refreshes renew it while a node has members), so a channel keeps its
 * epoch while anyone listens.
 *
 * Subscribe and recovery: the first member of a channel here SUBSCRIBEs,
 * and only once Redis confirmed it does the subscribe script run (ZADD
 * presence, read top and epoch, and with since the XRANGE after it):
 * anything published after the script is then sure to come live.  While
 * a subscribe script is out, live messages of its channel are held here
 * and handed on after its answer, so a replay always comes before live
 * ones, and the front drops any offset a member already has: no
 * duplicate, no loss.  since is recovered only if the epoch is the
 * channel's and every offset after it is still in the stream.
 *
 * Faults: Redis away at start or lost while running, the node serves on.
 * It logs bus.redis_down once per outage and tries again after 100 ms,
 * doubling up to 1 s, each delay less a random part of up to a half
 * (so that nodes do not come back in step); bus.redis_up when both
 * connections are up again, after AUTH, SELECT and the script loads.  On
 * a loss every local member is told {"type":"gap"} (the sink's gap), and
 * again when Redis is back (then a subscribe with since can recover), as
 * it is when a channel's epoch changes under it or its offsets jump.
 * While Redis is away a publish is delivered to this node's members at
 * once (without offset: it has none yet) and queued, up to redis_queue
 * bytes, to be published for the other nodes when Redis is back (flag q:
 * this node skips it then); past that budget the publisher gets an
 * error.  A subscribe meanwhile is answered not recovered, offset 0, and
 * goes live when Redis is back.  A command without an answer within
 * redis_timeout (a PING every second watches) counts as a loss.
 *
 * Until the first attempt has succeeded or failed (at most redis_timeout,
 * the connect usually takes a millisecond), nothing is answered locally:
 * publishes wait in the queue and subscribes in their channel's
 * waiting list, and go to Redis in order once it is up, so that a node
 * that has just started, above all a new process taking over from an
 * old one (a hand-over), gives every message its offset and replays
 * what its adopted members missed.  If that attempt fails they are
 * answered as in any outage.
 *
 * Where it runs: in every process that serves clients, each a node of
 * its own.  With workers > 1 each worker opens this backend after the
 * fork (bus.c; the master keeps no store then, workers.c), so it has
 * its own two connections and its own random node id: Redis sends each
 * worker a message once for all its members, in the one order Redis ran
 * the publishes, and presence members NODE:CONN stay unique without the
 * connection ids being unique across workers.  The price is 2 Redis
 * connections and one SUBSCRIBE per channel per worker, not per daemon;
 * the master's hop it saves would cost a copy and a wake-up per message.
 * While Redis is away a publish reaches at once only its own worker's
 * members: the other workers are nodes like any other and get the gap.
 * A reload's new redis keys are applied by each worker at its commit;
 * with workers > 1 a reload may not change the backend (workers.c), so
 * a replaced worker always joins the bus the others are on.
 * Sharded pub/sub (Redis Cluster) is a next step too: the keys of a
 * channel would need one hash tag.
 */
#include <sys/random.h>

#include <poll.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/sds.h>
#include <openssl/sha.h>
#include <uthash.h>

#include "wsplugd.h"

#define RETRY_FIRST_MS 100
#define RETRY_CAP_MS 1000
#define TICK_MS 1000
#define PRESENCE_MAX 10000

/*
 * The scripts.  Numbers cross Lua as doubles: offsets are exact to 2^53.
 */

#define LUA_NOW                                                           \
	"local t = redis.call('TIME') "                                   \
	"local now = tonumber(t[1]) * 1000 + "                            \
	"math.floor(tonumber(t[2]) / 1000) "

#define LUA_EPOCH                                                         \
	"local epoch = redis.call('HGET', KEYS[1], 'epoch') "             \
	"if not epoch then "                                              \
	"  epoch = ARGV[1] "                                              \
	"  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0) "        \
	"  redis.call('DEL', KEYS[2]) "                                   \
	"end "

/* KEYS: m s p; ARGV: new epoch, data, history_size, history_ttl, meta
 * ttl, pub/sub name, transient, origin, flag, except */
static const char script_pub[] =
	LUA_EPOCH
	"local off = 0 "
	"if ARGV[7] ~= '1' then "
	"  off = redis.call('HINCRBY', KEYS[1], 'top', 1) "
	"  if tonumber(ARGV[3]) > 0 then "
	"    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], off .. '-0', "
	"      'd', ARGV[2]) "
	"    redis.call('PEXPIRE', KEYS[2], ARGV[4]) "
	"  else redis.call('DEL', KEYS[2]) end "
	"end "
	"redis.call('PEXPIRE', KEYS[1], ARGV[5]) "
	"redis.call('PUBLISH', ARGV[6], 'W1 ' .. off .. ' ' .. epoch .. ' ' "
	"  .. ARGV[8] .. ' ' .. ARGV[9] .. ' ' .. ARGV[10] .. '\\n' .. "
	"  ARGV[2]) "
	LUA_NOW
	"return {off, epoch, redis.call('ZCOUNT', KEYS[3], now, '+inf')}";

/* KEYS: m s p; ARGV: new epoch, member, presence ttl, meta ttl, since?,
 * since offset, since epoch */
static const char script_sub[] =
	LUA_EPOCH
	LUA_NOW
	"local ttl = tonumber(ARGV[3]) "
	"redis.call('ZADD', KEYS[3], now + ttl, ARGV[2]) "
	"redis.call('PEXPIRE', KEYS[3], ttl * 2) "
	"redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) "
	"redis.call('PEXPIRE', KEYS[1], ARGV[4]) "
	"local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0') "
	"local out = {top, epoch, 0, redis.call('ZCARD', KEYS[3])} "
	"if ARGV[5] == '1' and ARGV[7] == epoch then "
	"  local since = tonumber(ARGV[6]) "
	"  if since == top then out[3] = 1 "
	"  elseif since < top then "
	"    local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1) "
	"    if f[1] then "
	"      local first = tonumber(string.match(f[1][1], '^(%d+)')) "
	"      local len = redis.call('XLEN', KEYS[2]) "
	"      if first <= since + 1 and len == top - first + 1 then "
	"        out[3] = 1 "
	"        for _, e in ipairs(redis.call('XRANGE', KEYS[2], "
	"            (since + 1) .. '-0', '+')) do "
	"          out[#out + 1] = tonumber(string.match(e[1], '^(%d+)')) "
	"          out[#out + 1] = e[2][2] "
	"        end "
	"      end "
	"    end "
	"  end "
	"end "
	"return out";

/* KEYS: p m; ARGV: presence ttl, meta ttl, members... */
static const char script_refresh[] =
	LUA_NOW
	"local ttl = tonumber(ARGV[1]) "
	"for i = 3, #ARGV do "
	"  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) "
	"end "
	"redis.call('PEXPIRE', KEYS[1], ttl * 2) "
	"redis.call('PEXPIRE', KEYS[2], ARGV[2]) "
	"return 1";

/* KEYS: p; ARGV: max */
static const char script_pres[] =
	LUA_NOW
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
	"local out = {redis.call('ZCARD', KEYS[1])} "
	"local max = tonumber(ARGV[1]) "
	"if max > 0 then "
	"  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, max - 1)) do "
	"    out[#out + 1] = m "
	"  end "
	"end "
	"return out";

enum { S_PUB, S_SUB, S_REFRESH, S_PRES, NSCRIPTS };

static const char *const scripts[NSCRIPTS] = {
	script_pub, script_sub, script_refresh, script_pres,
};

/*
 * The backend.
 */

enum rstate { R_DOWN, R_CONNECTING, R_UP };
enum subst { SUB_NONE, SUB_PENDING, SUB_ON };

struct rconn {
	UT_hash_handle hh;
	char id[BUS_CONN_ID_MAX + 1];
};

struct held {
	STAILQ_ENTRY(held) entry;
	size_t n;
	char p[];
};

struct rreq;

struct rchan {
	UT_hash_handle hh;
	struct rconn *conns; /* this process's members */
	size_t nconns;
	enum subst sub;
	unsigned subs_out;   /* SUBSCRIBEs not yet confirmed */
	unsigned pending;    /* subscribe scripts out */
	TAILQ_HEAD(, rreq) waiting; /* subscribes until SUB_ON */
	STAILQ_HEAD(, held) held;   /* live ones during a subscribe */
	uint64_t last;              /* the last offset seen here */
	char epoch[WSP_BUS_EPOCH_MAX + 1];
	char name[];
};

enum rkind { K_PUB, K_SUB, K_PRES, K_QPUB };

struct rreq {
	TAILQ_ENTRY(rreq) entry; /* in waiting, or the queue */
	struct bus_redis *b;
	enum rkind kind;
	struct rchan *ch; /* K_SUB */
	bus_replay_fn *replay;
	bus_done_fn *done;
	void *arg;
	int retried;           /* NOSCRIPT: sent again as EVAL */
	int has_since;
	uint64_t since;
	char since_epoch[WSP_BUS_EPOCH_MAX + 1];
	char conn[BUS_CONN_ID_MAX + 1];
	unsigned flags;
	size_t max;
	char channel[WSP_BUS_CHANNEL_MAX + 1];
	size_t n;
	char *data; /* K_PUB, K_QPUB */
};

struct bus_redis {
	struct event_base *base;
	struct bus_sink sink;
	struct bus_limits lim;
	struct metrics *m;
	/* settings */
	char *addr, *user, *password, *prefix;
	uint64_t db, timeout, pttl, queue_max;
	char node[17];
	char sha[NSCRIPTS][41];
	/* connections */
	enum rstate state;
	redisAsyncContext *cmd, *sub;
	redisAsyncContext *dead_cmd, *dead_sub; /* to free from the loop */
	int cmd_ready, sub_ready;
	int was_up;       /* bus.redis_up has been logged once */
	int down_logged;  /* this outage's bus.redis_down */
	unsigned attempt; /* of this outage, for the backoff */
	struct event *retry, *reap, *tick, *refresh;
	uint64_t connect_at;  /* mono ms of the attempt */
	uint64_t ping_at;     /* mono ms of the PING out, 0: none */
	/* channels and the queue */
	struct rchan *chans;
	size_t nchans;
	TAILQ_HEAD(, rreq) queue; /* publishes while away */
	size_t queued;
};

static void redis_lost(struct bus_redis *b, const char *why);
static void redis_connect(struct bus_redis *b);
static void sub_send(struct bus_redis *b, struct rreq *q);

static void
answer_error(bus_done_fn *done, void *arg)
{
	struct bus_answer a;

	memset(&a, 0, sizeof(a));
	a.error = -1;
	a.epoch = "";
	if (done != NULL)
		done(arg, &a);
}

static void
key_of(const struct bus_redis *b, char *out, size_t size, char kind,
    const char *channel)
{
	snprintf(out, size, "%s%c:%s", b->prefix, kind, channel);
}

static uint64_t
meta_ttl(const struct bus_redis *b)
{
	uint64_t t = b->lim.history_ttl;

	return t > 3 * b->pttl ? t : 3 * b->pttl;
}

static struct rchan *
rchan_get(struct bus_redis *b, const char *name, int create)
{
	size_t n = strlen(name);
	struct rchan *ch;

	HASH_FIND(hh, b->chans, name, n, ch);
	if (ch != NULL || !create)
		return ch;
	if ((ch = calloc(1, sizeof(*ch) + n + 1)) == NULL)
		return NULL;
	memcpy(ch->name, name, n + 1);
	TAILQ_INIT(&ch->waiting);
	STAILQ_INIT(&ch->held);
	HASH_ADD_KEYPTR(hh, b->chans, ch->name, n, ch);
	b->nchans++;
	return ch;
}

static void
rchan_maybe_free(struct bus_redis *b, struct rchan *ch)
{
	struct held *h;

	if (ch->nconns > 0 || ch->pending > 0 || !TAILQ_EMPTY(&ch->waiting))
		return;
	while ((h = STAILQ_FIRST(&ch->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&ch->held, entry);
		free(h);
	}
	HASH_DEL(b->chans, ch);
	b->nchans--;
	free(ch);
}

static void
req_free(struct rreq *q)
{
	free(q->data);
	free(q);
}

/* EVALSHA script on the command connection; -1 if it could not be sent
 * (the callback is then not called). */
static int
script_send(struct bus_redis *b, int s, int eval, redisCallbackFn *fn,
    void *arg, int nkeys, const char **argv, const size_t *argvlen, int argc)
{
	const char *av[64];
	size_t al[64];
	char nk[4];
	int i;

	if (b->cmd == NULL || argc + 3 > 64)
		return -1;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[0] = eval ? "EVAL" : "EVALSHA";
	av[1] = eval ? scripts[s] : b->sha[s];
	av[2] = nk;
	for (i = 0; i < 3; i++)
		al[i] = strlen(av[i]);
	for (i = 0; i < argc; i++) {
		av[3 + i] = argv[i];
		al[3 + i] = argvlen != NULL && argvlen[i] != (size_t)-1 ?
		    argvlen[i] : strlen(argv[i]);
	}
	return redisAsyncCommandArgv(b->cmd, fn, arg, argc + 3, av, al) ==
	    REDIS_OK ? 0 : -1;
}

static int
is_noscript(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static int64_t
reply_int(const redisReply *r)
{
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
	return -1;
}

/*
 * Publish.
 */

static int pub_send(struct bus_redis *b, struct rreq *q);

static void
pub_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rreq *q = arg;
	struct bus_redis *b = q->b;
	redisReply *r = reply;
	struct bus_answer a;
	char epoch[WSP_BUS_EPOCH_MAX + 1];

	(void)ac;
	if (is_noscript(r) && !q->retried) {
		q->retried = 1;
		if (pub_send(b, q) == 0)
			return;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: "
			    "Redis: %s", q->channel, r->str);
		b->m->redis_dropped++;
		if (q->kind == K_PUB)
			answer_error(q->done, q->arg);
		req_free(q);
		return;
	}
	b->m->redis_published++;
	snprintf(epoch, sizeof(epoch), "%s", r->element[1]->str);
	memset(&a, 0, sizeof(a));
	a.offset = (uint64_t)reply_int(r->element[0]);
	a.epoch = epoch;
	a.subscribers = (uint64_t)reply_int(r->element[2]);
	if (q->kind == K_PUB && q->done != NULL)
		q->done(q->arg, &a);
	req_free(q);
}

static int
pub_send(struct bus_redis *b, struct rreq *q)
{
	char km[300], ks[300], kp[300], kc[300], ep[17], hs[24], ht[24],
	    mt[24];
	const char *argv[13];
	size_t len[13];
	int i;

	key_of(b, km, sizeof(km), 'm', q->channel);
	key_of(b, ks, sizeof(ks), 's', q->channel);
	key_of(b, kp, sizeof(kp), 'p', q->channel);
	key_of(b, kc, sizeof(kc), 'c', q->channel);
	bus_epoch_new(ep);
	snprintf(hs, sizeof(hs), "%" PRIu64, b->lim.history_size);
	snprintf(ht, sizeof(ht), "%" PRIu64, b->lim.history_ttl);
	snprintf(mt, sizeof(mt), "%" PRIu64, meta_ttl(b));
	argv[0] = km;
	argv[1] = ks;
	argv[2] = kp;
	argv[3] = ep;
	argv[4] = q->data;
	argv[5] = hs;
	argv[6] = ht;
	argv[7] = mt;
	argv[8] = kc;
	argv[9] = (q->flags & WSP_BUS_TRANSIENT) ? "1" : "0";
	argv[10] = b->node;
	argv[11] = q->kind == K_QPUB ? "q" : "-";
	argv[12] = (q->flags & WSP_BUS_NOT_SELF) && q->conn[0] != '\0' ?
	    q->conn : "-";
	for (i = 0; i < 13; i++)
		len[i] = i == 4 ? q->n : (size_t)-1;
	return script_send(b, S_PUB, q->retried, pub_cb, q, 3, argv, len, 13);
}

/* Before the first attempt's end (see the top): nothing is answered
 * here, Redis will. */
static int
redis_starting(const struct bus_redis *b)
{
	return !b->was_up && !b->down_logged;
}

/* A queued publish while Redis is away: here at once, the other nodes
 * when Redis is back (flag q: this node skips it then). */
static void
pub_away(struct bus_redis *b, struct rreq *q)
{
	struct rchan *ch = rchan_get(b, q->channel, 0);
	struct bus_answer a;
	bus_done_fn *done = q->done;

	if (ch != NULL && ch->nconns > 0)
		b->sink.deliver(b->sink.arg, q->channel, 0, "",
		    (q->flags & WSP_BUS_NOT_SELF) ? q->conn : "", q->data,
		    q->n);
	memset(&a, 0, sizeof(a));
	a.epoch = "";
	a.subscribers = ch != NULL ? ch->nconns : 0;
	q->kind = K_QPUB;
	q->done = NULL;
	if (done != NULL)
		done(q->arg, &a);
}

static void
bus_redis_publish(void *be, const char *channel, const char *conn,
    unsigned flags, const char *data, size_t n, bus_done_fn *done, void *arg)
{
	struct bus_redis *b = be;
	struct rreq *q;

	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->data = malloc(n + 1)) == NULL) {
		if (q != NULL)
			free(q);
		b->m->redis_dropped++;
		answer_error(done, arg);
		return;
	}
	q->b = b;
	q->kind = K_PUB;
	q->done = done;
	q->arg = arg;
	q->flags = flags;
	q->n = n;
	memcpy(q->data, data, n);
	q->data[n] = '\0';
	snprintf(q->conn, sizeof(q->conn), "%s", conn);
	snprintf(q->channel, sizeof(q->channel), "%s", channel);
	if (b->state == R_UP) {
		if (pub_send(b, q) == 0)
			return;
		b->m->redis_dropped++;
		answer_error(done, arg);
		req_free(q);
		return;
	}
	if (b->queued + n > b->queue_max) {
		b->m->redis_dropped++;
		answer_error(done, arg);
		req_free(q);
		return;
	}
	TAILQ_INSERT_TAIL(&b->queue, q, entry);
	b->queued += n;
	if (!redis_starting(b))
		pub_away(b, q);
}

/*
 * Live messages.
 */

static void
chan_message(struct bus_redis *b, struct rchan *ch, const char *p, size_t n)
{
	struct bus_redis_msg m;
	int mine;

	if (bus_redis_msg_parse(p, n, &m) == -1) {
		log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: a malformed "
		    "message on Redis, dropped", ch->name);
		return;
	}
	mine = strcmp(m.origin, b->node) == 0;
	if (mine && m.queued)
		return; /* delivered here when it was published */
	b->m->redis_delivered++;
	if (m.offset > 0) {
		/* a new epoch (Redis flushed), or offsets this node never
		 * saw (dropped by Redis): the members may have missed some */
		if (ch->epoch[0] != '\0' && (strcmp(ch->epoch, m.epoch) != 0 ||
		    (ch->last > 0 && m.offset > ch->last + 1)))
			b->sink.gap(b->sink.arg, ch->name);
		snprintf(ch->epoch, sizeof(ch->epoch), "%s", m.epoch);
		ch->last = m.offset;
	}
	b->sink.deliver(b->sink.arg, ch->name, m.offset, m.epoch,
	    mine ? m.except : "", m.data, m.len);
}

static void
chan_flush_held(struct bus_redis *b, struct rchan *ch)
{
	struct held *h;

	while (ch->pending == 0 && (h = STAILQ_FIRST(&ch->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&ch->held, entry);
		if (ch->nconns > 0)
			chan_message(b, ch, h->p, h->n);
		free(h);
	}
}

static void
sub_conn_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct bus_redis *b = arg;
	redisReply *r = reply, *kind, *name;
	struct rchan *ch;
	struct rreq *q;
	struct held *h;
	size_t plen = strlen(b->prefix);
	const char *cname;

	if (ac != b->sub || r == NULL || r->type != REDIS_REPLY_ARRAY ||
	    r->elements < 3)
		return;
	kind = r->element[0];
	name = r->element[1];
	if (kind->type != REDIS_REPLY_STRING ||
	    name->type != REDIS_REPLY_STRING || name->len < plen + 2 ||
	    memcmp(name->str, b->prefix, plen) != 0 ||
	    memcmp(name->str + plen, "c:", 2) != 0)
		return;
	cname = name->str + plen + 2;
	if ((ch = rchan_get(b, cname, 0)) == NULL)
		return;
	if (strcmp(kind->str, "subscribe") == 0) {
		if (ch->subs_out > 0 && --ch->subs_out == 0 &&
		    ch->sub == SUB_PENDING) {
			ch->sub = SUB_ON;
			while ((q = TAILQ_FIRST(&ch->waiting)) != NULL) {
				TAILQ_REMOVE(&ch->waiting, q, entry);
				sub_send(b, q);
			}
		}
		return;
	}
	if (strcmp(kind->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	if (ch->pending > 0) { /* after the subscribe's answer */
		if ((h = malloc(sizeof(*h) + r->element[2]->len)) == NULL) {
			b->sink.gap(b->sink.arg, ch->name);
			return;
		}
		h->n = r->element[2]->len;
		memcpy(h->p, r->element[2]->str, h->n);
		STAILQ_INSERT_TAIL(&ch->held, h, entry);
		return;
	}
	if (ch->nconns > 0)
		chan_message(b, ch, r->element[2]->str, r->element[2]->len);
}

static void
chan_subscribe(struct bus_redis *b, struct rchan *ch)
{
	char kc[300];
	const char *argv[2] = { "SUBSCRIBE", kc };

	key_of(b, kc, sizeof(kc), 'c', ch->name);
	if (b->sub == NULL || redisAsyncCommandArgv(b->sub, sub_conn_cb, b, 2,
	    argv, NULL) != REDIS_OK)
		return;
	ch->sub = SUB_PENDING;
	ch->subs_out++;
}

static void
chan_unsubscribe(struct bus_redis *b, struct rchan *ch)
{
	char kc[300];
	const char *argv[2] = { "UNSUBSCRIBE", kc };

	ch->sub = SUB_NONE;
	key_of(b, kc, sizeof(kc), 'c', ch->name);
	if (b->sub != NULL)
		redisAsyncCommandArgv(b->sub, sub_conn_cb, b, 2, argv, NULL);
}

/*
 * Subscribe.
 */

static void
sub_answer_local(struct bus_redis *b, struct rreq *q)
{
	struct bus_answer a;

	/* Redis away: live when it is back, nothing recovered */
	memset(&a, 0, sizeof(a));
	a.epoch = "";
	a.subscribers = q->ch->nconns;
	(void)b;
	q->done(q->arg, &a);
}

static void
sub_finish(struct bus_redis *b, struct rreq *q)
{
	struct rchan *ch = q->ch;

	if (ch->pending > 0)
		ch->pending--;
	req_free(q);
	chan_flush_held(b, ch);
	rchan_maybe_free(b, ch);
}

static void
sub_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rreq *q = arg;
	struct bus_redis *b = q->b;
	struct rchan *ch = q->ch;
	redisReply *r = reply, *e;
	struct bus_answer a;
	char epoch[WSP_BUS_EPOCH_MAX + 1];
	size_t i;

	(void)ac;
	if (is_noscript(r) && !q->retried) {
		q->retried = 1;
		ch->pending--;
		sub_send(b, q);
		return;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 4 ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_msg(WSP_LOG_ERROR, "bus.error", "channel %s: "
			    "Redis: %s", q->channel, r->str);
		sub_answer_local(b, q);
		sub_finish(b, q);
		return;
	}
	snprintf(epoch, sizeof(epoch), "%s", r->element[1]->str);
	memset(&a, 0, sizeof(a));
	a.offset = (uint64_t)reply_int(r->element[0]);
	a.epoch = epoch;
	a.recovered = reply_int(r->element[2]) == 1;
	a.subscribers = (uint64_t)reply_int(r->element[3]);
	if (ch->epoch[0] != '\0' && strcmp(ch->epoch, epoch) != 0)
		b->sink.gap(b->sink.arg, ch->name);
	if (ch->epoch[0] == '\0' || strcmp(ch->epoch, epoch) != 0 ||
	    a.offset > ch->last) {
		snprintf(ch->epoch, sizeof(ch->epoch), "%s", epoch);
		ch->last = a.offset;
	}
	for (i = 4; a.recovered && i + 1 < r->elements; i += 2) {
		e = r->element[i + 1];
		if (e->type != REDIS_REPLY_STRING)
			continue;
		b->m->redis_replayed++;
		q->replay(q->arg, (uint64_t)reply_int(r->element[i]), e->str,
		    e->len);
	}
	q->done(q->arg, &a);
	sub_finish(b, q);
}

static void
sub_send(struct bus_redis *b, struct rreq *q)
{
	char km[300], ks[300], kp[300], ep[17], mem[64], pt[24], mt[24],
	    so[24];
	const char *argv[10];

	key_of(b, km, sizeof(km), 'm', q->channel);
	key_of(b, ks, sizeof(ks), 's', q->channel);
	key_of(b, kp, sizeof(kp), 'p', q->channel);
	bus_epoch_new(ep);
	snprintf(mem, sizeof(mem), "%s:%s", b->node, q->conn);
	snprintf(pt, sizeof(pt), "%" PRIu64, b->pttl);
	snprintf(mt, sizeof(mt), "%" PRIu64, meta_ttl(b));
	snprintf(so, sizeof(so), "%" PRIu64, q->since);
	argv[0] = km;
	argv[1] = ks;
	argv[2] = kp;
	argv[3] = ep;
	argv[4] = mem;
	argv[5] = pt;
	argv[6] = mt;
	argv[7] = q->has_since ? "1" : "0";
	argv[8] = so;
	argv[9] = q->since_epoch;
	q->ch->pending++;
	if (script_send(b, S_SUB, q->retried, sub_cb, q, 3, argv, NULL, 10) ==
	    -1) {
		sub_answer_local(b, q);
		sub_finish(b, q);
	}
}

static void
bus_redis_subscribe(void *be, const char *channel, const char *conn,
    int first, const struct wsp_bus_since *since, bus_replay_fn *replay,
    bus_done_fn *done, void *arg)
{
	struct bus_redis *b = be;
	struct rchan *ch;
	struct rconn *c;
	struct rreq *q;
	size_t n = strlen(conn);

	(void)first;
	if (n > BUS_CONN_ID_MAX || (ch = rchan_get(b, channel, 1)) == NULL) {
		answer_error(done, arg);
		return;
	}
	HASH_FIND(hh, ch->conns, conn, n, c);
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			rchan_maybe_free(b, ch);
			answer_error(done, arg);
			return;
		}
		memcpy(c->id, conn, n + 1);
		HASH_ADD(hh, ch->conns, id, n, c);
		ch->nconns++;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		answer_error(done, arg);
		return;
	}
	q->b = b;
	q->kind = K_SUB;
	q->ch = ch;
	q->replay = replay;
	q->done = done;
	q->arg = arg;
	snprintf(q->conn, sizeof(q->conn), "%s", conn);
	snprintf(q->channel, sizeof(q->channel), "%s", channel);
	if (since != NULL) {
		q->has_since = 1;
		q->since = since->offset;
		snprintf(q->since_epoch, sizeof(q->since_epoch), "%s",
		    since->epoch != NULL ? since->epoch : "");
	}
	if (b->state != R_UP && !redis_starting(b)) {
		sub_answer_local(b, q);
		req_free(q);
		return;
	}
	if (ch->sub == SUB_ON) {
		sub_send(b, q);
		return;
	}
	TAILQ_INSERT_TAIL(&ch->waiting, q, entry);
	if (ch->sub == SUB_NONE && b->state == R_UP)
		chan_subscribe(b, ch);
}

static void
bus_redis_unsubscribe(void *be, const char *channel, const char *conn,
    int last)
{
	struct bus_redis *b = be;
	struct rchan *ch = rchan_get(b, channel, 0);
	struct rconn *c;
	char kp[300], mem[64];
	const char *argv[3] = { "ZREM", kp, mem };

	(void)last;
	if (ch == NULL)
		return;
	HASH_FIND(hh, ch->conns, conn, strlen(conn), c);
	if (c == NULL)
		return;
	HASH_DEL(ch->conns, c);
	free(c);
	ch->nconns--;
	if (b->state == R_UP && b->cmd != NULL) {
		key_of(b, kp, sizeof(kp), 'p', channel);
		snprintf(mem, sizeof(mem), "%s:%s", b->node, conn);
		redisAsyncCommandArgv(b->cmd, NULL, NULL, 3, argv, NULL);
	}
	if (ch->nconns == 0 && ch->sub != SUB_NONE)
		chan_unsubscribe(b, ch);
	if (ch->nconns == 0)
		ch->last = 0, ch->epoch[0] = '\0';
	rchan_maybe_free(b, ch);
}

/*
 * Presence.
 */

struct pres_req {
	bus_done_fn *done;
	void *arg;
	size_t max;
};

static void
pres_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct pres_req *q = arg;
	redisReply *r = reply;
	struct bus_answer a;
	const char **ids = NULL;
	size_t i;

	(void)ac;
	memset(&a, 0, sizeof(a));
	a.epoch = "";
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    (r->elements > 1 && (ids = calloc(r->elements - 1,
	    sizeof(*ids))) == NULL)) {
		answer_error(q->done, q->arg);
		free(q);
		return;
	}
	a.subscribers = (uint64_t)reply_int(r->element[0]);
	for (i = 1; i < r->elements && a.nids < q->max; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			ids[a.nids++] = r->element[i]->str;
	a.ids = ids;
	q->done(q->arg, &a);
	free(ids);
	free(q);
}

static void
bus_redis_presence(void *be, const char *channel, size_t max,
    bus_done_fn *done, void *arg)
{
	struct bus_redis *b = be;
	struct pres_req *q;
	struct rchan *ch;
	struct rconn *c, *tmp;
	struct bus_answer a;
	const char **ids;
	char kp[300], mx[24];
	const char *argv[2] = { kp, mx };

	if (max > PRESENCE_MAX)
		max = PRESENCE_MAX;
	if (b->state != R_UP) { /* away: this node's own members */
		memset(&a, 0, sizeof(a));
		a.epoch = "";
		ch = rchan_get(b, channel, 0);
		if ((ids = calloc(max > 0 ? max : 1, sizeof(*ids))) == NULL) {
			answer_error(done, arg);
			return;
		}
		if (ch != NULL) {
			a.subscribers = ch->nconns;
			HASH_ITER(hh, ch->conns, c, tmp) {
				if (a.nids == max)
					break;
				ids[a.nids++] = c->id;
			}
		}
		a.ids = ids;
		done(arg, &a);
		free(ids);
		return;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		answer_error(done, arg);
		return;
	}
	q->done = done;
	q->arg = arg;
	q->max = max;
	key_of(b, kp, sizeof(kp), 'p', channel);
	snprintf(mx, sizeof(mx), "%zu", max);
	if (script_send(b, S_PRES, 1, pres_cb, q, 1, argv, NULL, 2) == -1) {
		answer_error(done, arg);
		free(q);
	}
}

/* Every redis_presence_ttl/3: this node's members, renewed, one EVAL
 * per channel. */
static void
presence_refresh(struct bus_redis *b)
{
	struct rchan *ch, *tmp;
	struct rconn *c, *ctmp;
	const char **av;
	size_t *al, i, nav;
	char kp[300], km[300], pt[24], mt[24], (*mem)[64];

	if (b->state != R_UP || b->cmd == NULL)
		return;
	snprintf(pt, sizeof(pt), "%" PRIu64, b->pttl);
	snprintf(mt, sizeof(mt), "%" PRIu64, meta_ttl(b));
	HASH_ITER(hh, b->chans, ch, tmp) {
		if (ch->nconns == 0)
			continue;
		nav = 7 + ch->nconns;
		av = calloc(nav, sizeof(*av));
		al = calloc(nav, sizeof(*al));
		mem = calloc(ch->nconns, sizeof(*mem));
		if (av == NULL || al == NULL || mem == NULL) {
			free(av);
			free(al);
			free(mem);
			return;
		}
		key_of(b, kp, sizeof(kp), 'p', ch->name);
		key_of(b, km, sizeof(km), 'm', ch->name);
		av[0] = "EVAL"; /* not EVALSHA: nobody would see a NOSCRIPT */
		av[1] = script_refresh;
		av[2] = "2";
		av[3] = kp;
		av[4] = km;
		av[5] = pt;
		av[6] = mt;
		i = 0;
		HASH_ITER(hh, ch->conns, c, ctmp) {
			snprintf(mem[i], sizeof(mem[i]), "%s:%s", b->node,
			    c->id);
			av[7 + i] = mem[i];
			i++;
		}
		for (i = 0; i < nav; i++)
			al[i] = strlen(av[i]);
		redisAsyncCommandArgv(b->cmd, NULL, NULL, (int)nav, av, al);
		free(av);
		free(al);
		free(mem);
	}
}

/*
 * The connections.
 */

static void
redis_set_state(struct bus_redis *b, enum rstate s)
{
	b->state = s;
	b->m->redis_state = s == R_UP;
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bus_redis *b = arg;
	redisAsyncContext *ac;

	(void)fd;
	(void)what;
	if ((ac = b->dead_cmd) != NULL) {
		b->dead_cmd = NULL;
		redisAsyncFree(ac);
	}
	if ((ac = b->dead_sub) != NULL) {
		b->dead_sub = NULL;
		redisAsyncFree(ac);
	}
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redis_connect(arg);
}

static void
retry_schedule(struct bus_redis *b)
{
	uint64_t ms = RETRY_FIRST_MS;
	uint32_t r = 0;
	struct timeval tv;
	unsigned i;

	for (i = 0; i < b->attempt && ms < RETRY_CAP_MS; i++)
		ms *= 2;
	if (ms > RETRY_CAP_MS)
		ms = RETRY_CAP_MS;
	/* jitter: up to half of it off, so that nodes spread out */
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)clock_mono_ms() * 2654435761U;
	ms -= (ms / 2) * (r % 1000) / 1000;
	b->attempt++;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	event_add(b->retry, &tv);
}

/* Both connections go; members are told; try again later. */
static void
redis_lost(struct bus_redis *b, const char *why)
{
	struct rchan *ch, *tmp;
	struct rreq *q;
	int starting = redis_starting(b);

	if (b->state == R_DOWN)
		return;
	if (!b->down_logged) {
		log_msg(WSP_LOG_WARN, "bus.redis_down", "Redis at %s: %s: "
		    "channels are local to this node until it is back; "
		    "retrying", b->addr, why);
		b->down_logged = 1;
	} else
		log_msg(WSP_LOG_DEBUG, "bus.redis_down", "Redis at %s: %s",
		    b->addr, why);
	redis_set_state(b, R_DOWN);
	b->cmd_ready = b->sub_ready = 0;
	b->ping_at = 0;
	if (b->cmd != NULL) {
		b->dead_cmd = b->cmd;
		b->cmd = NULL;
	}
	if (b->sub != NULL) {
		b->dead_sub = b->sub;
		b->sub = NULL;
	}
	event_active(b->reap, EV_TIMEOUT, 0);
	HASH_ITER(hh, b->chans, ch, tmp) {
		ch->sub = SUB_NONE;
		ch->subs_out = 0;
		while ((q = TAILQ_FIRST(&ch->waiting)) != NULL) {
			TAILQ_REMOVE(&ch->waiting, q, entry);
			sub_answer_local(b, q);
			req_free(q);
		}
		if (ch->nconns > 0 && b->was_up)
			b->sink.gap(b->sink.arg, ch->name);
		ch->last = 0;
		ch->epoch[0] = '\0';
		rchan_maybe_free(b, ch);
	}
	/* the first attempt failed: what it held is answered as away,
	 * in the order it came */
	if (starting)
		TAILQ_FOREACH(q, &b->queue, entry)
			if (q->kind == K_PUB)
				pub_away(b, q);
	retry_schedule(b);
}

static void
redis_up(struct bus_redis *b)
{
	struct rchan *ch, *tmp;
	struct rreq *q;
	int starting = redis_starting(b);

	if (b->state != R_CONNECTING || !b->cmd_ready || !b->sub_ready)
		return;
	redis_set_state(b, R_UP);
	if (b->was_up)
		b->m->redis_reconnects++;
	b->was_up = 1;
	b->down_logged = 0;
	b->attempt = 0;
	log_msg(WSP_LOG_INFO, "bus.redis_up", "Redis at %s: connected, "
	    "node %s, %zu channels here, %zu bytes queued", b->addr, b->node,
	    b->nchans, b->queued);
	/* Members here since the loss (or since before a first attempt
	 * that failed) are told again: now a subscribe with since can
	 * recover, and any offset goes (Redis may be back under new
	 * epochs).  After a first attempt that succeeded every member is
	 * still waiting for its answer: nothing to tell. */
	HASH_ITER(hh, b->chans, ch, tmp) {
		if (ch->nconns == 0) { /* all left while they waited */
			while ((q = TAILQ_FIRST(&ch->waiting)) != NULL) {
				TAILQ_REMOVE(&ch->waiting, q, entry);
				sub_answer_local(b, q);
				req_free(q);
			}
			rchan_maybe_free(b, ch);
			continue;
		}
		if (!starting)
			b->sink.gap(b->sink.arg, ch->name);
		if (ch->sub == SUB_NONE)
			chan_subscribe(b, ch);
	}
	presence_refresh(b);
	while ((q = TAILQ_FIRST(&b->queue)) != NULL) {
		TAILQ_REMOVE(&b->queue, q, entry);
		b->queued -= q->n;
		if (pub_send(b, q) == -1) {
			b->m->redis_dropped++;
			if (q->kind == K_PUB) /* held at start */
				answer_error(q->done, q->arg);
			req_free(q);
		}
	}
}

static void
ready_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct bus_redis *b = arg;
	redisReply *r = reply;

	if (r == NULL || (ac != b->cmd && ac != b->sub))
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		char why[256];

		snprintf(why, sizeof(why), "%s", r->str);
		redis_lost(b, why);
		return;
	}
	if (ac == b->cmd)
		b->cmd_ready = 1;
	else
		b->sub_ready = 1;
	redis_up(b);
}

/* AUTH's and SELECT's errors are reported by the PING after them: a
 * failed AUTH makes the PING fail with NOAUTH, but its own text says
 * more, so it is kept. */
static void
setup_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct bus_redis *b = arg;
	redisReply *r = reply;
	char why[256];

	if (r == NULL || (ac != b->cmd && ac != b->sub) ||
	    r->type != REDIS_REPLY_ERROR)
		return;
	snprintf(why, sizeof(why), "%s", r->str);
	redis_lost(b, why);
}

static void
connect_cb(const redisAsyncContext *ac, int status)
{
	struct bus_redis *b = ac->data;
	char why[256];

	if (status == REDIS_OK)
		return;
	/* hiredis frees it after this, without a disconnect callback */
	snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] != '\0' ?
	    ac->errstr : "failed");
	if (ac == b->cmd)
		b->cmd = NULL;
	else if (ac == b->sub)
		b->sub = NULL;
	else if (ac == b->dead_cmd) {
		b->dead_cmd = NULL;
		return;
	} else if (ac == b->dead_sub) {
		b->dead_sub = NULL;
		return;
	} else
		return;
	redis_lost(b, why);
}

static void
disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct bus_redis *b = ac->data;
	char why[256];

	snprintf(why, sizeof(why), "%s", status == REDIS_OK ||
	    ac->errstr[0] == '\0' ? "connection closed" : ac->errstr);
	/* hiredis frees it after this */
	if (ac == b->dead_cmd)
		b->dead_cmd = NULL;
	else if (ac == b->dead_sub)
		b->dead_sub = NULL;
	else if (ac == b->cmd) {
		b->cmd = NULL;
		redis_lost(b, why);
	} else if (ac == b->sub) {
		b->sub = NULL;
		redis_lost(b, why);
	}
}

static redisAsyncContext *
redis_open_one(struct bus_redis *b, int is_sub, char *why, size_t whysz)
{
	char host[256];
	int port, i;
	redisAsyncContext *ac;
	const char *av[3];

	if (redis_addr_parse(b->addr, host, sizeof(host), &port) == -1) {
		snprintf(why, whysz, "bad address");
		return NULL;
	}
	ac = port == 0 ? redisAsyncConnectUnix(host) :
	    redisAsyncConnect(host, port);
	if (ac == NULL) {
		snprintf(why, whysz, "out of memory");
		return NULL;
	}
	if (ac->err) {
		snprintf(why, whysz, "connect: %s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = b;
	if (redisLibeventAttach(ac, b->base) != REDIS_OK) {
		snprintf(why, whysz, "out of memory");
		redisAsyncFree(ac);
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	if (b->password != NULL) {
		av[0] = "AUTH";
		av[1] = b->user != NULL ? b->user : b->password;
		av[2] = b->password;
		redisAsyncCommandArgv(ac, setup_cb, b, b->user != NULL ? 3 : 2,
		    av, NULL);
	}
	if (!is_sub) {
		char db[24];

		if (b->db != 0) {
			snprintf(db, sizeof(db), "%" PRIu64, b->db);
			av[0] = "SELECT";
			av[1] = db;
			redisAsyncCommandArgv(ac, setup_cb, b, 2, av, NULL);
		}
		for (i = 0; i < NSCRIPTS; i++) {
			av[0] = "SCRIPT";
			av[1] = "LOAD";
			av[2] = scripts[i];
			redisAsyncCommandArgv(ac, setup_cb, b, 3, av, NULL);
		}
	}
	av[0] = "PING";
	redisAsyncCommandArgv(ac, ready_cb, b, 1, av, NULL);
	return ac;
}

static void
redis_connect(struct bus_redis *b)
{
	char why[256];

	if (b->state != R_DOWN)
		return;
	redis_set_state(b, R_CONNECTING);
	b->connect_at = clock_mono_ms();
	if ((b->cmd = redis_open_one(b, 0, why, sizeof(why))) == NULL ||
	    (b->sub = redis_open_one(b, 1, why, sizeof(why))) == NULL) {
		redis_lost(b, why);
		return;
	}
}

static void
ping_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct bus_redis *b = arg;

	if (reply == NULL || ac != b->cmd || b->ping_at == 0)
		return;
	b->m->redis_rtt_us = (clock_mono_ms() - b->ping_at) * 1000;
	b->ping_at = 0;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bus_redis *b = arg;
	uint64_t now = clock_mono_ms();
	const char *av[1] = { "PING" };

	(void)fd;
	(void)what;
	if (b->state == R_CONNECTING && now - b->connect_at >= b->timeout) {
		redis_lost(b, "connect: timed out");
		return;
	}
	if (b->state != R_UP)
		return;
	if (b->ping_at != 0) {
		if (now - b->ping_at >= b->timeout)
			redis_lost(b, "no answer within redis_timeout");
		return;
	}
	if (redisAsyncCommandArgv(b->cmd, ping_cb, b, 1, av, NULL) ==
	    REDIS_OK)
		b->ping_at = now;
}

static void
refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	presence_refresh(arg);
}

/*
 * The table.
 */

static void
bus_redis_configure(void *be, const struct bus_limits *lim)
{
	struct bus_redis *b = be;

	b->lim = *lim; /* history_memory is Redis's own maxmemory's */
}

static void
bus_redis_stats(void *be, uint64_t *channels_r, uint64_t *bytes_r)
{
	struct bus_redis *b = be;

	*channels_r = b->nchans;
	*bytes_r = b->queued; /* the history is in Redis */
}

static void
settings_free(struct bus_redis *b)
{
	free(b->addr);
	free(b->user);
	if (b->password != NULL) {
		explicit_bzero(b->password, strlen(b->password));
		free(b->password);
	}
	free(b->prefix);
	b->addr = b->user = b->password = b->prefix = NULL;
}

static int
settings_set(struct bus_redis *b, const struct wsp_config *cfg)
{
	settings_free(b);
	b->addr = strdup(cfg->bus_redis != NULL ? cfg->bus_redis : "");
	b->user = cfg->bus_redis_user != NULL ?
	    strdup(cfg->bus_redis_user) : NULL;
	b->password = cfg->bus_redis_password != NULL ?
	    strdup(cfg->bus_redis_password) : NULL;
	b->prefix = strdup(cfg->bus_redis_prefix != NULL ?
	    cfg->bus_redis_prefix : "wsplugd:");
	b->db = cfg->bus_redis_db;
	b->timeout = cfg->bus_redis_timeout;
	b->pttl = cfg->bus_redis_presence_ttl;
	b->queue_max = cfg->bus_redis_queue;
	if (b->addr == NULL || b->prefix == NULL ||
	    (cfg->bus_redis_user != NULL && b->user == NULL) ||
	    (cfg->bus_redis_password != NULL && b->password == NULL))
		return -1;
	return 0;
}

static int
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

void
bus_redis_reconfigure(void *be, const struct wsp_config *cfg)
{
	struct bus_redis *b = be;
	struct timeval tv;
	int again;

	again = str_differs(b->addr, cfg->bus_redis) ||
	    str_differs(b->user, cfg->bus_redis_user) ||
	    str_differs(b->password, cfg->bus_redis_password) ||
	    strcmp(b->prefix, cfg->bus_redis_prefix != NULL ?
	    cfg->bus_redis_prefix : "wsplugd:") != 0 ||
	    b->db != cfg->bus_redis_db;
	if (settings_set(b, cfg) == -1) {
		log_msg(WSP_LOG_ERROR, "bus.error", "Redis settings: out of "
		    "memory");
		return;
	}
	if (!again)
		return;
	redis_lost(b, "[bus] redis settings changed");
	event_del(b->retry);
	b->attempt = 0;
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	event_add(b->retry, &tv);
	/* presence refreshes at its new pace */
	tv.tv_sec = (time_t)(b->pttl / 3 / 1000);
	tv.tv_usec = (suseconds_t)((b->pttl / 3 % 1000) * 1000);
	event_add(b->refresh, &tv);
}

static void
bus_redis_free(void *be)
{
	struct bus_redis *b = be;
	struct rchan *ch, *tmp;
	struct rconn *c, *ctmp;
	struct rreq *q;
	redisAsyncContext *ac;

	/* a connection's pending callbacks run (reply NULL) as it goes */
	b->state = R_DOWN;
	b->was_up = 0;
	if ((ac = b->cmd) != NULL) {
		b->cmd = NULL;
		redisAsyncFree(ac);
	}
	if ((ac = b->sub) != NULL) {
		b->sub = NULL;
		redisAsyncFree(ac);
	}
	reap_cb(-1, 0, b);
	while ((q = TAILQ_FIRST(&b->queue)) != NULL) {
		TAILQ_REMOVE(&b->queue, q, entry);
		if (q->kind == K_PUB) /* held at start: never answered */
			answer_error(q->done, q->arg);
		req_free(q);
	}
	HASH_ITER(hh, b->chans, ch, tmp) {
		while ((q = TAILQ_FIRST(&ch->waiting)) != NULL) {
			TAILQ_REMOVE(&ch->waiting, q, entry);
			answer_error(q->done, q->arg);
			req_free(q);
		}
		HASH_ITER(hh, ch->conns, c, ctmp) {
			HASH_DEL(ch->conns, c);
			free(c);
		}
		ch->nconns = 0;
		ch->pending = 0;
		rchan_maybe_free(b, ch);
	}
	if (b->retry != NULL)
		event_free(b->retry);
	if (b->reap != NULL)
		event_free(b->reap);
	if (b->tick != NULL)
		event_free(b->tick);
	if (b->refresh != NULL)
		event_free(b->refresh);
	b->m->redis_state = 0;
	settings_free(b);
	free(b);
}

/*
 * A hand-over, the loop standing still (the backend's pump, called by
 * handover.c and workers.c before the connections move): every command
 * out gets its answer and every subscribe settles here and now, because
 * this process's two Redis connections do not move.  Before, a publish
 * out at the pause was run by Redis but its acknowledgement died with
 * the old process, and its publisher waited for ever.  Messages that
 * come in meanwhile on the subscriber connection are delivered as usual
 * (into output that moves with the connections); what comes after the
 * pause the successor replays from each member's position.  Bounded by
 * redis_timeout, after which a silent Redis is a loss, as anywhere
 * else.  Only flush 1, the old side's: 0 (read what came in) has nothing
 * to do, the subscriber connection is not watched once paused; and 2,
 * the new side's, need not wait, as its adopted members subscribe with
 * their positions and miss nothing.
 */
static int
redis_settled(const struct bus_redis *b)
{
	const struct rchan *ch, *tmp;

	if (b->cmd == NULL || b->sub == NULL)
		return 1;
	if (b->cmd->replies.head != NULL || sdslen(b->cmd->c.obuf) > 0 ||
	    b->sub->replies.head != NULL || sdslen(b->sub->c.obuf) > 0)
		return 0;
	HASH_ITER(hh, b->chans, ch, tmp)
		if (ch->subs_out > 0 || ch->pending > 0 ||
		    !TAILQ_EMPTY(&ch->waiting))
			return 0;
	return 1;
}

static void
redis_pump_one(struct bus_redis *b, int is_sub, short revents)
{
	redisAsyncContext *ac = is_sub ? b->sub : b->cmd;

	/* each call may end the connection (then it is NULL here) */
	if (ac != NULL && (revents & POLLOUT))
		redisAsyncHandleWrite(ac);
	ac = is_sub ? b->sub : b->cmd;
	if (ac != NULL && (revents & (POLLIN | POLLHUP | POLLERR)))
		redisAsyncHandleRead(ac);
}

static int
redis_pump(void *be, int flush, int *fd_r)
{
	struct bus_redis *b = be;
	struct pollfd p[2];
	uint64_t end = clock_mono_ms() + b->timeout, now;
	int n, i;

	*fd_r = -1;
	if (flush != 1)
		return 0;
	while (b->state == R_UP && !redis_settled(b)) {
		for (i = 0; i < 2; i++) {
			redisAsyncContext *ac = i ? b->sub : b->cmd;

			p[i].fd = ac->c.fd;
			p[i].events = POLLIN |
			    (sdslen(ac->c.obuf) > 0 ? POLLOUT : 0);
			p[i].revents = 0;
		}
		now = clock_mono_ms();
		n = now < end ? poll(p, 2, (int)(end - now)) : 0;
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_msg(WSP_LOG_WARN, "bus.redis_down", "Redis at %s: "
			    "no answer within redis_timeout while the "
			    "connections were handed over", b->addr);
			redis_lost(b, "no answer during a hand-over");
			return 0;
		}
		redis_pump_one(b, 0, p[0].revents);
		if (b->state == R_UP)
			redis_pump_one(b, 1, p[1].revents);
	}
	return 0;
}

static const struct bus_backend redis_ops = {
	.name = "redis",
	.configure = bus_redis_configure,
	.publish = bus_redis_publish,
	.subscribe = bus_redis_subscribe,
	.unsubscribe = bus_redis_unsubscribe,
	.presence = bus_redis_presence,
	.stats = bus_redis_stats,
	.pump = redis_pump,
	.free = bus_redis_free,
};

int
bus_redis_open(struct bus_backend *bk, struct event_base *base,
    const struct wsp_config *cfg, const struct bus_limits *lim,
    const struct bus_sink *sink, struct metrics *m)
{
	struct timeval tick = { TICK_MS / 1000, 0 }, rt;
	unsigned char md[SHA_DIGEST_LENGTH];
	struct bus_redis *b;
	int i, j;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return -1;
	b->base = base;
	b->sink = *sink;
	b->lim = *lim;
	b->m = m;
	TAILQ_INIT(&b->queue);
	bus_epoch_new(b->node);
	for (i = 0; i < NSCRIPTS; i++) {
		SHA1((const unsigned char *)scripts[i], strlen(scripts[i]), md);
		for (j = 0; j < SHA_DIGEST_LENGTH; j++)
			snprintf(b->sha[i] + 2 * j, 3, "%02x", md[j]);
	}
	if (settings_set(b, cfg) == -1 ||
	    (b->retry = evtimer_new(base, retry_cb, b)) == NULL ||
	    (b->reap = event_new(base, -1, 0, reap_cb, b)) == NULL ||
	    (b->tick = event_new(base, -1, EV_PERSIST, tick_cb, b)) == NULL ||
	    (b->refresh = event_new(base, -1, EV_PERSIST, refresh_cb, b)) ==
	    NULL || event_add(b->tick, &tick) == -1) {
		bus_redis_free(b);
		return -1;
	}
	rt.tv_sec = (time_t)(b->pttl / 3 / 1000);
	rt.tv_usec = (suseconds_t)((b->pttl / 3 % 1000) * 1000);
	event_add(b->refresh, &rt);
	m->redis_state = 0;
	*bk = redis_ops;
	bk->be = b;
	redis_connect(b);
	return 0;
}
