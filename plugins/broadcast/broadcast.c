/*
 * broadcast: publish/subscribe channels, on the daemon's bus.
 *
 *   {"type":"subscribe","channel":"news"}    -> {"type":"subscribed",…}
 *   {"type":"subscribe","channel":"news","since":{"offset":N,"epoch":E}}
 *       replays what was published after N, then answers with
 *       "recovered":true (or false: refetch, the gap is not in history)
 *   {"type":"unsubscribe","channel":"news"}  -> {"type":"unsubscribed",…}
 *   {"type":"publish","channel":"news","data":…}
 *       every subscriber (the publisher too, if subscribed), in every
 *       worker, gets {"type":"message","channel":"news","data":…,
 *       "from":"<conn id>","offset":N,"epoch":E}; a publish carrying an
 *       "id" is acknowledged with {"type":"published",…,"id":…}
 *   {"type":"presence","channel":"news"}     -> the connection ids on it
 *
 * With `presence = yes`, subscribers also see
 * {"type":"presence","channel":…,"event":"join"|"leave","connectionId":…}.
 *
 * With `channels_claim = NAME` (and `claims_plugin`, default "jwt"), a
 * connection may subscribe and publish only to the channels its claim
 * lists: the attribute NAME the claims plugin kept for it, an array of
 * channel names in which "{sub}" stands for the connection's user and a
 * trailing "*" for any rest.  No such attribute: no channel at all.
 *
 * The channels are the daemon's (the bus, host ABI 3), not this plugin's:
 * the bus numbers each channel's messages, keeps their history, delivers
 * each exactly once in publish order to subscribers in every worker, and
 * keeps a connection's subscriptions across a reload of this plugin.
 * What the plugin keeps is the answers it still owes: each holds the
 * request's id, and unload frees those never answered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wsplugd/plugin.h>

#define PRESENCE_MAX 1000 /* ids in one presence answer */

struct pending {
	struct pending *prev, *next;
	struct broadcast *b;
	json_t *id;  /* the request's, or NULL */
	int joined;  /* a subscribe that adds the connection: announce it */
};

struct broadcast {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	int presence;
	uint64_t max_channels; /* per connection */
	struct pending *pending;
	char claim[65];        /* channels_claim, "" when off */
	char claims_plugin[65];
};

static int
bc_load(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
    struct wsp_section *sec, void **state_r)
{
	struct broadcast *b;
	int presence;
	uint64_t max;
	const char *claim, *from;

	if (host->cfg_bool(sec, "presence", 0, &presence) == -1 ||
	    host->cfg_uint(sec, "max_channels", 64, 100000, &max) == -1 ||
	    host->cfg_string(sec, "channels_claim", "", &claim) == -1 ||
	    host->cfg_string(sec, "claims_plugin", "jwt", &from) == -1)
		return -1;
	if (strlen(claim) > 64 || strlen(from) > 64) {
		host->cfg_error(sec, strlen(claim) > 64 ? "channels_claim" :
		    "claims_plugin", "at most 64 bytes");
		return -1;
	}
	if (max == 0) {
		host->cfg_error(sec, "max_channels", "must be at least 1");
		return -1;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return -1;
	b->host = host;
	b->ctx = ctx;
	b->presence = presence;
	b->max_channels = max;
	snprintf(b->claim, sizeof(b->claim), "%s", claim);
	snprintf(b->claims_plugin, sizeof(b->claims_plugin), "%s", from);
	*state_r = b;
	return 0;
}

static struct pending *
pending_new(struct broadcast *b, json_t *id)
{
	struct pending *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->b = b;
	p->id = json_incref(id);
	p->next = b->pending;
	if (p->next != NULL)
		p->next->prev = p;
	b->pending = p;
	return p;
}

static void
pending_free(struct pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		p->b->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	json_decref(p->id);
	free(p);
}

static void
bc_unload(void *state)
{
	struct broadcast *b = state;

	while (b->pending != NULL)
		pending_free(b->pending);
	free(b);
}

static void
reply(struct broadcast *b, struct wsp_conn *c, json_t *msg, json_t *id)
{
	if (msg == NULL)
		return;
	if (id != NULL)
		json_object_set(msg, "id", id);
	b->host->send_json(c, msg);
	json_decref(msg);
}

static void
fail(struct broadcast *b, struct wsp_conn *c, json_t *id, const char *code,
    const char *text)
{
	reply(b, c, json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
	    "message", text), id);
}

/* A presence event for the channel's other subscribers, in every worker:
 * transient, so it takes no offset and stays out of history. */
static void
announce(struct broadcast *b, struct wsp_conn *c, const char *channel,
    const char *event)
{
	json_t *msg;
	char *text;

	if (!b->presence)
		return;
	msg = json_pack("{s:s, s:s, s:s, s:s}", "type", "presence", "channel",
	    channel, "event", event, "connectionId", b->host->conn_id(c));
	if (msg == NULL)
		return;
	if ((text = json_dumps(msg, JSON_COMPACT)) != NULL)
		b->host->bus_publish(b->ctx, c, channel, text, strlen(text),
		    WSP_BUS_TRANSIENT | WSP_BUS_NOT_SELF, NULL, NULL);
	free(text);
	json_decref(msg);
}

/* Does pattern allow name for user?  "{sub}" is the user, a final "*"
 * any rest. */
static int
channel_allowed_by(const char *pat, const char *name, const char *user)
{
	size_t ul = user != NULL ? strlen(user) : 0;

	while (*pat != '\0') {
		if (pat[0] == '*' && pat[1] == '\0')
			return 1;
		if (strncmp(pat, "{sub}", 5) == 0) {
			if (user == NULL || strncmp(name, user, ul) != 0)
				return 0;
			name += ul;
			pat += 5;
			continue;
		}
		if (*pat++ != *name++)
			return 0;
	}
	return *name == '\0';
}

static int
channel_allowed(struct broadcast *b, struct wsp_conn *c, const char *name)
{
	json_t *list, *v;
	size_t i;

	if (b->claim[0] == '\0')
		return 1;
	list = b->host->attr_read(c, b->claims_plugin, b->claim);
	json_array_foreach(list, i, v)
		if (json_is_string(v) && channel_allowed_by(json_string_value(v),
		    name, b->host->conn_user(c)))
			return 1;
	return 0;
}

static const char *
channel_arg(struct broadcast *b, struct wsp_conn *c,
    const struct wsp_message *m, json_t *id)
{
	json_t *ch = json_object_get(b->host->message_json(m),
	    "channel");
	const char *name = json_string_value(ch);
	size_t n = name != NULL ? strlen(name) : 0, i;

	for (i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			break;
	if (name == NULL || n == 0 || n > WSP_BUS_CHANNEL_MAX || i < n ||
	    n != json_string_length(ch)) {
		fail(b, c, id, "invalid_channel",
		    "\"channel\" must be a non-empty string of at most 128 "
		    "bytes without control characters");
		return NULL;
	}
	/* unsubscribing is always allowed: a claim may have shrunk */
	if (strcmp(m->type, "unsubscribe") != 0 &&
	    !channel_allowed(b, c, name)) {
		fail(b, c, id, "forbidden_channel",
		    "this connection's claims do not allow that channel");
		return NULL;
	}
	return name;
}

struct find {
	const char *name;
	int found;
};

static void
find_cb(const char *channel, void *arg)
{
	struct find *f = arg;

	f->found |= strcmp(channel, f->name) == 0;
}

static void
subscribed_cb(void *arg, struct wsp_conn *c,
    const struct wsp_bus_subscribed *r)
{
	struct pending *p = arg;
	struct broadcast *b = p->b;

	if (c != NULL && r->error)
		fail(b, c, p->id, "bus_error", "the subscription failed");
	else if (c != NULL) {
		if (p->joined)
			announce(b, c, r->channel, "join");
		reply(b, c, json_pack("{s:s, s:s, s:I, s:b, s:I, s:s}",
		    "type", "subscribed", "channel", r->channel,
		    "subscribers", (json_int_t)r->subscribers,
		    "recovered", r->recovered,
		    "offset", (json_int_t)r->offset, "epoch", r->epoch),
		    p->id);
	}
	pending_free(p);
}

/* "since": {"offset": N, "epoch": E}, or the flat form the browser
 * client (clients/js) sends, "since": N beside "epoch": E; 0, or -1
 * after an error reply. */
static int
since_arg(struct broadcast *b, struct wsp_conn *c, json_t *id,
    const struct wsp_message *m, json_t *v, struct wsp_bus_since *since_r)
{
	json_t *o = json_object_get(v, "offset"), *e = json_object_get(v,
	    "epoch");

	if (json_is_integer(v)) {
		e = json_object_get(b->host->message_json(m), "epoch");
		if (json_integer_value(v) >= 0 && (e == NULL ||
		    (json_is_string(e) && json_string_length(e) <=
		    WSP_BUS_EPOCH_MAX))) {
			since_r->offset = (uint64_t)json_integer_value(v);
			/* no epoch: never the channel's, so not recovered */
			since_r->epoch = e != NULL ? json_string_value(e) : "";
			return 0;
		}
		o = NULL; /* the error below */
	}

	if (!json_is_object(v) || !json_is_integer(o) ||
	    json_integer_value(o) < 0 || !json_is_string(e) ||
	    json_string_length(e) > WSP_BUS_EPOCH_MAX) {
		fail(b, c, id, "invalid_since", "\"since\" must be "
		    "{\"offset\": an integer >= 0, \"epoch\": a string of at "
		    "most 32 bytes}");
		return -1;
	}
	since_r->offset = (uint64_t)json_integer_value(o);
	since_r->epoch = json_string_value(e);
	return 0;
}

static void
do_subscribe(struct broadcast *b, struct wsp_conn *c,
    const struct wsp_message *m, const char *name, json_t *id)
{
	json_t *sv = json_object_get(b->host->message_json(m), "since");
	struct wsp_bus_since since;
	struct find f = { name, 0 };
	struct pending *p;
	size_t n;

	if (sv != NULL && since_arg(b, c, id, m, sv, &since) == -1)
		return;
	n = b->host->bus_channels(b->ctx, c, find_cb, &f);
	if (!f.found && n >= b->max_channels) {
		fail(b, c, id, "too_many_channels",
		    "subscribed to max_channels channels already");
		return;
	}
	if ((p = pending_new(b, id)) == NULL)
		return;
	p->joined = !f.found;
	if (b->host->bus_subscribe(b->ctx, c, name, sv != NULL ? &since : NULL,
	    subscribed_cb, p) == -1) {
		fail(b, c, id, "bus_error", "the subscription failed");
		pending_free(p);
	}
}

static void
do_unsubscribe(struct broadcast *b, struct wsp_conn *c, const char *name,
    json_t *id)
{
	struct find f = { name, 0 };

	b->host->bus_channels(b->ctx, c, find_cb, &f);
	if (!f.found) {
		fail(b, c, id, "not_subscribed", "not subscribed to that channel");
		return;
	}
	announce(b, c, name, "leave");
	b->host->bus_unsubscribe(b->ctx, c, name);
	reply(b, c, json_pack("{s:s, s:s}", "type", "unsubscribed", "channel",
	    name), id);
}

static void
published_cb(void *arg, struct wsp_conn *c,
    const struct wsp_bus_published *r)
{
	struct pending *p = arg;
	struct broadcast *b = p->b;

	if (c != NULL && r->error)
		fail(b, c, p->id, "bus_error", "the message was not published");
	else if (c != NULL)
		reply(b, c, json_pack("{s:s, s:s, s:I, s:I, s:s}", "type",
		    "published", "channel", r->channel, "delivered",
		    (json_int_t)r->subscribers, "offset", (json_int_t)r->offset,
		    "epoch", r->epoch), p->id);
	pending_free(p);
}

static void
do_publish(struct broadcast *b, struct wsp_conn *c,
    const struct wsp_message *m, const char *name, json_t *id)
{
	json_t *data = json_object_get(b->host->message_json(m), "data"), *msg;
	struct pending *p = NULL;
	char *text;

	msg = json_pack("{s:s, s:s, s:O?, s:s}", "type", "message",
	    "channel", name, "data", data, "from", b->host->conn_id(c));
	if (msg == NULL)
		return;
	text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (text == NULL)
		return;
	if (id != NULL && (p = pending_new(b, id)) == NULL) {
		free(text);
		return;
	}
	if (b->host->bus_publish(b->ctx, c, name, text, strlen(text), 0,
	    p != NULL ? published_cb : NULL, p) == -1) {
		fail(b, c, id, "bus_error", "the message was not published");
		if (p != NULL)
			pending_free(p);
	}
	free(text);
}

static void
presence_cb(void *arg, struct wsp_conn *c, const char *const *ids, size_t n,
    uint64_t total)
{
	struct pending *p = arg;
	json_t *a;
	size_t i;

	if (c != NULL && (a = json_array()) != NULL) {
		for (i = 0; i < n; i++)
			json_array_append_new(a, json_string(ids[i]));
		reply(p->b, c, json_pack("{s:s, s:s?, s:o, s:I}", "type",
		    "presence", "channel", json_string_value(json_object_get(
		    p->id, "channel")), "connections", a, "total",
		    (json_int_t)total), json_object_get(p->id, "id"));
	}
	pending_free(p);
}

static void
do_presence(struct broadcast *b, struct wsp_conn *c, const char *name,
    json_t *id)
{
	struct pending *p;
	json_t *ctx;

	/* what the answer needs: the channel and the request's id */
	if ((ctx = json_pack("{s:s, s:O?}", "channel", name, "id", id)) == NULL)
		return;
	p = pending_new(b, ctx);
	json_decref(ctx);
	if (p == NULL)
		return;
	if (b->host->bus_presence(b->ctx, c, name, PRESENCE_MAX, presence_cb,
	    p) == -1) {
		fail(b, c, id, "bus_error", "presence is not available");
		pending_free(p);
	}
}

static void
bc_message(void *state, struct wsp_conn *c, const struct wsp_message *m)
{
	struct broadcast *b = state;
	/* Every request here needs its members: the tree, built once. */
	json_t *id = json_object_get(b->host->message_json(m), "id");
	const char *name;

	if ((name = channel_arg(b, c, m, id)) == NULL)
		return;
	if (strcmp(m->type, "subscribe") == 0)
		do_subscribe(b, c, m, name, id);
	else if (strcmp(m->type, "unsubscribe") == 0)
		do_unsubscribe(b, c, name, id);
	else if (strcmp(m->type, "presence") == 0)
		do_presence(b, c, name, id);
	else
		do_publish(b, c, m, name, id);
}

struct leave {
	struct broadcast *b;
	struct wsp_conn *c;
};

static void
leave_cb(const char *channel, void *arg)
{
	struct leave *l = arg;

	announce(l->b, l->c, channel, "leave");
}

/* c is closing: its subscriptions end with it (the bus drops them after
 * this); the others hear that it left. */
static void
bc_close(void *state, struct wsp_conn *c, uint16_t code)
{
	struct broadcast *b = state;
	struct leave l = { b, c };

	(void)code;
	if (b->presence)
		b->host->bus_channels(b->ctx, c, leave_cb, &l);
}

static const char *const bc_types[] = { "subscribe", "unsubscribe",
	"publish", "presence", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "broadcast",
	.version = PACKAGE_VERSION,
	.types = bc_types,
	.load = bc_load,
	.unload = bc_unload,
	.message = bc_message,
	.close = bc_close,
};
