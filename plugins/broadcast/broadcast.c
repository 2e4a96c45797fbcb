/*
 * broadcast: publish/subscribe channels.
 *
 *   {"type":"subscribe","channel":"news"}    -> {"type":"subscribed",…}
 *   {"type":"unsubscribe","channel":"news"}  -> {"type":"unsubscribed",…}
 *   {"type":"publish","channel":"news","data":…}
 *       every subscriber (the publisher too, if subscribed) gets
 *       {"type":"message","channel":"news","data":…,"from":"<conn id>"};
 *       a publish carrying an "id" is acknowledged with
 *       {"type":"published","channel":"news","delivered":N,"id":…}
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
 * The channel index lives in this plugin, but a connection's membership is
 * also kept as a daemon-owned attribute ("channels": an array of names).
 * When a new build of the plugin is loaded by a reload, adopt() rebuilds
 * the index from those attributes, so subscriptions survive the reload.
 *
 * A message is serialized once per publish and queued for each subscriber
 * in subscription order; per-connection output is FIFO, so every
 * subscriber sees a channel's messages in publish order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <wsplugd/plugin.h>

#define CHANNEL_NAME_MAX 128

struct member {
	UT_hash_handle hh; /* keyed by the connection pointer */
	struct wsp_conn *conn;
};

struct channel {
	UT_hash_handle hh; /* keyed by name */
	struct member *members;
	char name[];
};

struct broadcast {
	const struct wsp_host *host;
	struct wsp_plugin_ctx *ctx;
	struct channel *channels;
	int presence;
	uint64_t max_channels; /* per connection */
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

static void
channel_free(struct broadcast *b, struct channel *ch)
{
	struct member *m, *tmp;

	HASH_ITER(hh, ch->members, m, tmp) {
		HASH_DEL(ch->members, m);
		free(m);
	}
	HASH_DEL(b->channels, ch);
	free(ch);
}

static void
bc_unload(void *state)
{
	struct broadcast *b = state;
	struct channel *ch, *tmp;

	HASH_ITER(hh, b->channels, ch, tmp)
		channel_free(b, ch);
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

/* Send one serialized message to every member of ch; returns the count. */
static int
channel_send(struct broadcast *b, struct channel *ch, const char *text,
    size_t n, struct wsp_conn *except)
{
	struct member *m, *tmp;
	int sent = 0;

	HASH_ITER(hh, ch->members, m, tmp) {
		if (m->conn == except)
			continue;
		if (b->host->send_text(m->conn, text, n) == 0)
			sent++;
	}
	return sent;
}

static void
presence(struct broadcast *b, struct channel *ch, struct wsp_conn *c,
    const char *event)
{
	json_t *msg;
	char *text;

	if (!b->presence)
		return;
	msg = json_pack("{s:s, s:s, s:s, s:s}", "type", "presence", "channel",
	    ch->name, "event", event, "connectionId", b->host->conn_id(c));
	if (msg == NULL)
		return;
	if ((text = json_dumps(msg, JSON_COMPACT)) != NULL)
		channel_send(b, ch, text, strlen(text), c);
	free(text);
	json_decref(msg);
}

static struct channel *
channel_get(struct broadcast *b, const char *name, int create)
{
	struct channel *ch;
	size_t n = strlen(name);

	HASH_FIND(hh, b->channels, name, n, ch);
	if (ch != NULL || !create)
		return ch;
	if ((ch = calloc(1, sizeof(*ch) + n + 1)) == NULL)
		return NULL;
	memcpy(ch->name, name, n + 1);
	HASH_ADD_KEYPTR(hh, b->channels, ch->name, n, ch);
	return ch;
}

static int
member_add(struct channel *ch, struct wsp_conn *c)
{
	struct member *m;

	HASH_FIND_PTR(ch->members, &c, m);
	if (m != NULL)
		return 0;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -1;
	m->conn = c;
	HASH_ADD_PTR(ch->members, conn, m);
	return 1;
}

static void
member_remove(struct broadcast *b, struct channel *ch, struct wsp_conn *c)
{
	struct member *m;

	HASH_FIND_PTR(ch->members, &c, m);
	if (m == NULL)
		return;
	HASH_DEL(ch->members, m);
	free(m);
	if (ch->members == NULL)
		channel_free(b, ch);
}

/* The connection's membership attribute: an array of channel names. */
static json_t *
memberships(struct broadcast *b, struct wsp_conn *c)
{
	json_t *a = b->host->attr_get(b->ctx, c, "channels");

	return json_is_array(a) ? a : NULL;
}

static int
memberships_set(struct broadcast *b, struct wsp_conn *c, json_t *a)
{
	return b->host->attr_set(b->ctx, c, "channels",
	    json_array_size(a) > 0 ? a : NULL);
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

	if (name == NULL || name[0] == '\0' ||
	    strlen(name) > CHANNEL_NAME_MAX) {
		fail(b, c, id, "invalid_channel",
		    "\"channel\" must be a non-empty string of at most 128 "
		    "bytes");
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

static void
do_subscribe(struct broadcast *b, struct wsp_conn *c, const char *name,
    json_t *id)
{
	json_t *mine = memberships(b, c), *copy;
	struct channel *ch = channel_get(b, name, 0);
	int added;

	if (ch == NULL && json_array_size(mine) >= b->max_channels) {
		fail(b, c, id, "too_many_channels",
		    "subscribed to max_channels channels already");
		return;
	}
	if ((ch = channel_get(b, name, 1)) == NULL)
		return;
	if ((added = member_add(ch, c)) == -1)
		return;
	if (added) {
		if (json_array_size(mine) >= b->max_channels) {
			member_remove(b, ch, c);
			fail(b, c, id, "too_many_channels",
			    "subscribed to max_channels channels already");
			return;
		}
		copy = mine != NULL ? json_copy(mine) : json_array();
		json_array_append_new(copy, json_string(name));
		memberships_set(b, c, copy);
		json_decref(copy);
		presence(b, ch, c, "join");
	}
	reply(b, c, json_pack("{s:s, s:s, s:I}", "type", "subscribed",
	    "channel", name, "subscribers", (json_int_t)HASH_COUNT(ch->members)),
	    id);
}

static void
forget(struct broadcast *b, struct wsp_conn *c, const char *name)
{
	json_t *mine = memberships(b, c), *copy, *v;
	size_t i;

	if (mine == NULL)
		return;
	copy = json_array();
	json_array_foreach(mine, i, v)
		if (!json_is_string(v) || strcmp(json_string_value(v), name) != 0)
			json_array_append(copy, v);
	memberships_set(b, c, copy);
	json_decref(copy);
}

static void
do_unsubscribe(struct broadcast *b, struct wsp_conn *c, const char *name,
    json_t *id)
{
	struct channel *ch = channel_get(b, name, 0);
	struct member *m = NULL;

	if (ch != NULL)
		HASH_FIND_PTR(ch->members, &c, m);
	if (m == NULL) {
		fail(b, c, id, "not_subscribed", "not subscribed to that channel");
		return;
	}
	presence(b, ch, c, "leave");
	member_remove(b, ch, c);
	forget(b, c, name);
	reply(b, c, json_pack("{s:s, s:s}", "type", "unsubscribed", "channel",
	    name), id);
}

static void
do_publish(struct broadcast *b, struct wsp_conn *c,
    const struct wsp_message *m, const char *name, json_t *id)
{
	struct channel *ch = channel_get(b, name, 0);
	json_t *data = json_object_get(b->host->message_json(m), "data");
	json_t *msg;
	char *text;
	int sent = 0;

	if (ch != NULL) {
		msg = json_pack("{s:s, s:s, s:O?, s:s}", "type", "message",
		    "channel", name, "data", data, "from", b->host->conn_id(c));
		if (msg == NULL)
			return;
		text = json_dumps(msg, JSON_COMPACT);
		json_decref(msg);
		if (text == NULL)
			return;
		sent = channel_send(b, ch, text, strlen(text), NULL);
		free(text);
	}
	if (id != NULL)
		reply(b, c, json_pack("{s:s, s:s, s:i}", "type", "published",
		    "channel", name, "delivered", sent), id);
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
		do_subscribe(b, c, name, id);
	else if (strcmp(m->type, "unsubscribe") == 0)
		do_unsubscribe(b, c, name, id);
	else
		do_publish(b, c, m, name, id);
}

/* A reload brought this build in while c was open: re-enter c in the
 * channels its attribute lists. */
static void
bc_adopt(void *state, struct wsp_conn *c)
{
	struct broadcast *b = state;
	json_t *mine = memberships(b, c), *v;
	struct channel *ch;
	size_t i;

	json_array_foreach(mine, i, v) {
		if (!json_is_string(v))
			continue;
		if ((ch = channel_get(b, json_string_value(v), 1)) != NULL)
			member_add(ch, c);
	}
}

static void
bc_close(void *state, struct wsp_conn *c, uint16_t code)
{
	struct broadcast *b = state;
	json_t *mine = memberships(b, c), *v;
	struct channel *ch;
	size_t i;

	(void)code;
	json_array_foreach(mine, i, v) {
		if (!json_is_string(v))
			continue;
		if ((ch = channel_get(b, json_string_value(v), 0)) == NULL)
			continue;
		presence(b, ch, c, "leave");
		member_remove(b, ch, c);
	}
}

static const char *const bc_types[] = { "subscribe", "unsubscribe",
	"publish", NULL };

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI,
	.name = "broadcast",
	.version = PACKAGE_VERSION,
	.types = bc_types,
	.load = bc_load,
	.unload = bc_unload,
	.adopt = bc_adopt,
	.message = bc_message,
	.close = bc_close,
};
