/*
 * wsplugd plugin ABI.
 *
 * This is the only header a plugin includes.  A plugin is a shared object
 * that exports exactly one symbol, `wsplugd_plugin`, a descriptor whose first
 * field is the ABI number it was built against.  The daemon refuses a plugin
 * whose number differs from its own, so an old build fails a check instead
 * of crashing.
 *
 * A plugin never links against daemon symbols: everything it may ask of the
 * daemon is in the host table handed to its load callback.  Connections are
 * opaque.  Message payloads and connection metadata are borrowed: valid until
 * the callback that received them returns.
 *
 * ABI 3: a message arrives as its text with its "type" and "id" read
 * from it; the jansson tree is built only when the plugin asks for it
 * (message_json), once per message.  A plugin may decide on a client
 * before it is upgraded (the upgrade callback) and name its user.
 *
 * All callbacks run on the daemon's event loop thread.  A callback must not
 * block; one that runs longer than the configured threshold is logged as
 * slow with the plugin's name.
 */
#ifndef WSPLUGD_PLUGIN_H
#define WSPLUGD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to this file. */
#define WSPLUGD_PLUGIN_ABI 3

/* The descriptor's symbol name. */
#define WSPLUGD_PLUGIN_SYMBOL "wsplugd_plugin"

#if defined(__GNUC__)
#define WSP_EXPORT __attribute__((visibility("default")))
#define WSP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WSP_EXPORT
#define WSP_PRINTF(f, a)
#endif

struct wsp_conn;    /* a WebSocket connection, owned by the daemon */
struct wsp_plugin_ctx; /* this plugin's handle in the daemon */
struct wsp_section; /* this plugin's [plugin:NAME] config section */
struct wsp_timer;   /* a host-owned timer */

/* The bus (ABI 3).  A channel name is 1 to WSP_BUS_CHANNEL_MAX bytes. */
#define WSP_BUS_CHANNEL_MAX 128
#define WSP_BUS_EPOCH_MAX 32

/* Where a subscriber left off: the offset and epoch of the last message
 * it saw on the channel. */
struct wsp_bus_since {
	uint64_t offset;
	const char *epoch;
};

/* The answer to a subscribe; strings borrowed for the callback. */
struct wsp_bus_subscribed {
	const char *channel;
	int error;          /* 0, or -1: the bus could not subscribe */
	int recovered;      /* since was given and every message after it
	                       follows this answer; 0 otherwise */
	uint64_t offset;    /* the channel's last offset (0: none yet) */
	const char *epoch;  /* the channel's epoch */
	uint64_t subscribers; /* on the channel, every worker, this one
	                         included */
};

/* The answer to a publish. */
struct wsp_bus_published {
	const char *channel;
	int error;          /* 0, or -1: not published */
	uint64_t offset;    /* the message's offset (0 for a transient one) */
	const char *epoch;
	uint64_t subscribers; /* it was queued for, every worker */
};

/* bus_publish flags */
#define WSP_BUS_TRANSIENT 0x1 /* no offset, not kept in history */
#define WSP_BUS_NOT_SELF 0x2  /* not delivered to the publishing conn */

enum wsp_log_level {
	WSP_LOG_DEBUG = 0,
	WSP_LOG_INFO = 1,
	WSP_LOG_WARN = 2,
	WSP_LOG_ERROR = 3,
};

/* RFC 6455 section 7.4.1 close codes a plugin is likely to use. */
enum wsp_close_code {
	WSP_CLOSE_NORMAL = 1000,
	WSP_CLOSE_GOING_AWAY = 1001,
	WSP_CLOSE_PROTOCOL_ERROR = 1002,
	WSP_CLOSE_UNSUPPORTED = 1003,
	WSP_CLOSE_INVALID_DATA = 1007,
	WSP_CLOSE_POLICY = 1008,
	WSP_CLOSE_TOO_BIG = 1009,
	WSP_CLOSE_INTERNAL_ERROR = 1011,
};

/* One message as delivered to a plugin; everything in it is borrowed.
 * The JSON tree is not built unless host->message_json(msg) is called,
 * with this very pointer. */
struct wsp_message {
	const char *type; /* the "type" string; NULL for raw deliveries */
	const void *data; /* the payload as received: the JSON text */
	size_t len;
	int binary; /* 1 for a binary message (raw deliveries only) */
	/* The top-level "id" member's value as JSON text (a string keeps
	 * its quotes), ready to paste into a reply; NULL when none (and
	 * for raw deliveries). */
	const char *id;
	size_t id_len;
};

/* A snapshot of a connection's registry entry; strings are borrowed. */
struct wsp_conn_info {
	const char *id;          /* 32 hex digits: 128 random bits */
	const char *ip;          /* client address, numeric */
	uint16_t port;           /* client port */
	const char *user_agent;  /* "" when the client sent none */
	const char *origin;      /* "" when the client sent none */
	const char *path;        /* request target as received */
	const char *subprotocol; /* "" when none was negotiated */
	int64_t connected_at_ms; /* Unix time in milliseconds */
	int64_t last_activity_ms;
	uint64_t msgs_in, msgs_out;
	uint64_t bytes_in, bytes_out;
	const char *user;        /* set by a plugin (set_user), "" when none */
};

/*
 * What an upgrade callback is shown of the client's request, before the
 * 101.  Strings are NUL-terminated and borrowed until the plugin answers
 * (the callback's return or upgrade_answer); other headers, cookies
 * among them, through host->request_header.
 */
struct wsp_upgrade_request {
	const char *method;      /* "GET" */
	const char *target;      /* the request target as sent */
	const char *path;        /* the target up to '?' */
	const char *query;       /* after '?', not decoded; "" when none */
	const char *ip;          /* client address, numeric */
	uint16_t port;
	const char *subprotocol; /* the one negotiated, "" when none */
	const char *origin;      /* "" when the client sent none */
	const char *user_agent;  /* "" when the client sent none */
};

/* An upgrade callback's answer: accept, defer (answer later with
 * host->upgrade_answer), or an HTTP status from 400 to 599 to refuse. */
#define WSP_UPGRADE_ACCEPT 0
#define WSP_UPGRADE_DEFER 1

/*
 * The host table.  `abi` and `size` let a plugin check what it was given.
 * Functions that return int return 0 on success and -1 on failure unless
 * they say otherwise.  A send to a connection that is closing fails; so
 * does one that would take its unsent output past max_output_buffer (the
 * connection is then closed with 1008).
 */
struct wsp_host {
	uint32_t abi;
	size_t size;

	/* Claim a message type for this plugin; only valid during load.
	 * "*" claims every message no other plugin claims, text or binary,
	 * delivered raw without JSON parsing.  Claiming a type another plugin
	 * holds is a configuration error. */
	int (*claim)(struct wsp_plugin_ctx *ctx, const char *type);

	/* Output.  Data is copied; the caller keeps ownership. */
	int (*send_text)(struct wsp_conn *c, const char *data, size_t len);
	int (*send_binary)(struct wsp_conn *c, const void *data, size_t len);
	int (*send_json)(struct wsp_conn *c, const json_t *msg);
	/* Start the close handshake; code is a valid RFC 6455 code, the
	 * reason at most 123 bytes of UTF-8 (longer ones are truncated). */
	int (*close)(struct wsp_conn *c, uint16_t code, const char *reason);

	/* Metadata and iteration. */
	void (*conn_info)(const struct wsp_conn *c, struct wsp_conn_info *info_r);
	const char *(*conn_id)(const struct wsp_conn *c);
	/* Calls fn for every open connection until fn returns non-zero;
	 * returns that value, or 0.  fn must not close connections other
	 * than the one it is given. */
	int (*foreach_conn)(struct wsp_plugin_ctx *ctx,
	    int (*fn)(struct wsp_conn *c, void *arg), void *arg);
	size_t (*conn_count)(struct wsp_plugin_ctx *ctx);
	/* Send msg, serialized once, to every open connection for which
	 * filter returns non-zero (every one when filter is NULL).  Returns
	 * the number of connections it was queued for, or -1. */
	int (*broadcast_json)(struct wsp_plugin_ctx *ctx, const json_t *msg,
	    int (*filter)(struct wsp_conn *c, void *arg), void *arg);

	/* Per-connection attributes, namespaced per plugin.  The daemon
	 * stores a deep copy of value (NULL deletes); attr_get returns a
	 * borrowed reference or NULL.  Attributes outlive a plugin reload. */
	int (*attr_set)(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
	    const char *key, const json_t *value);
	json_t *(*attr_get)(struct wsp_plugin_ctx *ctx, const struct wsp_conn *c,
	    const char *key);

	/* Host-owned timers: cancelled by the daemon when the plugin is
	 * unloaded (after its unload callback), so a stale callback never
	 * runs.  A one-shot timer's handle is gone once its callback has
	 * returned; fn's argument stays the plugin's to free.  The kernel
	 * may run fn up to [server] timer_slack (4 ms by default) late. */
	struct wsp_timer *(*timer_add)(struct wsp_plugin_ctx *ctx,
	    uint64_t after_ms, int repeat, void (*fn)(void *arg), void *arg);
	void (*timer_cancel)(struct wsp_timer *t);

	/* Wall-clock time in Unix milliseconds, from a coarse clock (a few
	 * milliseconds' resolution, no system call). */
	int64_t (*now_ms)(struct wsp_plugin_ctx *ctx);

	/* One log line with the plugin's name; c may be NULL. */
	void (*log)(struct wsp_plugin_ctx *ctx, enum wsp_log_level level,
	    const struct wsp_conn *c, const char *fmt, ...) WSP_PRINTF(4, 5);

	/* Typed getters for this plugin's section, valid during load only
	 * (copy what you keep).  A missing key yields def.  A bad value is
	 * reported as FILE:LINE and returns -1; load should then fail.  Keys
	 * the plugin never asks for are reported as unknown after load. */
	int (*cfg_string)(struct wsp_section *sec, const char *key,
	    const char *def, const char **value_r);
	int (*cfg_bool)(struct wsp_section *sec, const char *key, int def,
	    int *value_r);
	int (*cfg_uint)(struct wsp_section *sec, const char *key, uint64_t def,
	    uint64_t max, uint64_t *value_r);
	int (*cfg_duration_ms)(struct wsp_section *sec, const char *key,
	    uint64_t def, uint64_t *value_r);
	int (*cfg_size)(struct wsp_section *sec, const char *key, uint64_t def,
	    uint64_t *value_r);
	/* Report a plugin-specific problem with key's FILE:LINE. */
	void (*cfg_error)(struct wsp_section *sec, const char *key,
	    const char *fmt, ...) WSP_PRINTF(3, 4);

	/* ABI 3: the bus */
	/* Channels that cross every worker of the daemon: a message
	 * published on a channel reaches each subscribed connection, in
	 * whichever worker, exactly once, and every subscriber sees a
	 * channel's messages in one order.  Subscriptions belong to the
	 * daemon: they outlive a reload of the plugin and end when the
	 * connection closes.
	 *
	 * Answers come through done callbacks, later or (with one worker)
	 * before the call returns.  A done is called exactly once while its
	 * plugin is loaded, with c NULL when the connection closed
	 * meanwhile (free arg then); a plugin unloaded first never hears
	 * of it (its unload frees what it still waits for).  Every function
	 * returns 0 when the request was taken (done will be called), -1
	 * when refused (bad channel name, closing connection, out of
	 * memory; done will not be called). */

	/* Subscribe c to channel.  With since (NULL: none), the messages
	 * after since->offset still in history are delivered to c after the
	 * answer and before any new one, when since->epoch is the
	 * channel's: then the answer says recovered.  Subscribing twice is
	 * not an error (the answer comes again, nothing is replayed). */
	int (*bus_subscribe)(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
	    const char *channel, const struct wsp_bus_since *since,
	    void (*done)(void *arg, struct wsp_conn *c,
	    const struct wsp_bus_subscribed *r), void *arg);
	/* 1 when c was subscribed (and is no more), 0 when it was not. */
	int (*bus_unsubscribe)(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
	    const char *channel);
	/* Publish text, a JSON object of len bytes, on channel.  Each
	 * subscriber receives it with "offset" (1, 2, 3... per channel) and
	 * "epoch" members added, unless WSP_BUS_TRANSIENT.  c is the
	 * publisher (NULL: none): WSP_BUS_NOT_SELF skips it, and done (may be
	 * NULL) gets c NULL if it closes first.  Data is copied. */
	int (*bus_publish)(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
	    const char *channel, const char *text, size_t len, unsigned flags,
	    void (*done)(void *arg, struct wsp_conn *c,
	    const struct wsp_bus_published *r), void *arg);
	/* Call fn for each channel c is subscribed to, in this process;
	 * returns how many there are. */
	size_t (*bus_channels)(struct wsp_plugin_ctx *ctx,
	    const struct wsp_conn *c, void (*fn)(const char *channel,
	    void *arg), void *arg);
	/* The connection ids subscribed to channel in every worker (at most
	 * max of them; *total_r says how many there are): a borrowed array
	 * for done.  c as for bus_publish. */
	int (*bus_presence)(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
	    const char *channel, size_t max, void (*done)(void *arg,
	    struct wsp_conn *c, const char *const *ids, size_t n,
	    uint64_t total), void *arg);
	/* ABI 3: the handshake and JSON */

	/* The message's JSON tree, built on the first call and kept until
	 * the message callback returns (borrowed: do not decref).  msg must
	 * be the pointer the callback was given.  NULL when the text is not
	 * a JSON object (raw deliveries) or memory runs out. */
	json_t *(*message_json)(const struct wsp_message *msg);
	/* A deferred upgrade's answer: 0 accepts (the next plugin with an
	 * upgrade callback is asked), 400..599 refuses with reason (at most
	 * 123 bytes are kept).  Only for a connection this plugin deferred
	 * and whose upgrade_cancel has not been called; -1 otherwise. */
	int (*upgrade_answer)(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
	    int status, const char *reason);
	/* The connection's user, shown in logs, /connections and conn_info;
	 * a copy is kept (UTF-8, at most 255 bytes; NULL clears).  Any time
	 * from the upgrade callback on. */
	int (*set_user)(struct wsp_conn *c, const char *user);
	/* NULL when no plugin set one. */
	const char *(*conn_user)(const struct wsp_conn *c);
	/* A request header's value (the first of that name, matched without
	 * regard to case), during the handshake only: from the upgrade
	 * callback until the last plugin answered.  NULL when absent. */
	const char *(*request_header)(const struct wsp_conn *c,
	    const char *name);
	/* Another plugin's attribute (borrowed, read only), or NULL: how
	 * plugins share what one learned, say a token's claims. */
	json_t *(*attr_read)(const struct wsp_conn *c, const char *plugin,
	    const char *key);
};

/*
 * The descriptor a plugin exports as `wsplugd_plugin`.  Every callback but
 * message is optional.  `state` is whatever load stored in *state_r.
 */
struct wsp_plugin {
	uint32_t abi; /* WSPLUGD_PLUGIN_ABI: always first */
	const char *name;
	const char *version;
	/* Types always handled, NULL-terminated; load may claim more. */
	const char *const *types;

	/* Validate the section, claim types, build state.  Return 0, or -1
	 * after reporting through cfg_error or the getters. */
	int (*load)(struct wsp_plugin_ctx *ctx, const struct wsp_host *host,
	    struct wsp_section *sec, void **state_r);
	void (*unload)(void *state);

	/* A new connection finished its handshake. */
	void (*open)(void *state, struct wsp_conn *c);
	/* The plugin was loaded while c was already open. */
	void (*adopt)(void *state, struct wsp_conn *c);
	/* A message of a claimed type. */
	void (*message)(void *state, struct wsp_conn *c,
	    const struct wsp_message *msg);
	/* c is going away; code is the close code (1006 when none). */
	void (*close)(void *state, struct wsp_conn *c, uint16_t code);

	/* ABI 3.  A client asks to upgrade: before the 101, in load order,
	 * every plugin with this callback must accept.  Return
	 * WSP_UPGRADE_ACCEPT, an HTTP status 400..599 to refuse (with
	 * *reason_r a short text for the response and the log, copied),
	 * or WSP_UPGRADE_DEFER and answer later with host->upgrade_answer,
	 * within the server's handshake_timeout (else the client gets 408).
	 * set_user and attr_set may be called on c from here on. */
	int (*upgrade)(void *state, struct wsp_conn *c,
	    const struct wsp_upgrade_request *req, const char **reason_r);
	/* A deferred handshake ended before the plugin answered (timeout,
	 * client gone, shutdown): forget c, which is about to be freed. */
	void (*upgrade_cancel)(void *state, struct wsp_conn *c);
	/* A reload (SIGHUP) succeeded and kept this plugin as it was (same
	 * file, same section): re-read what it loaded from other files,
	 * such as keys.  It cannot fail the reload; keep what works. */
	void (*reload)(void *state);
};

#ifdef __cplusplus
}
#endif

#endif /* WSPLUGD_PLUGIN_H */
