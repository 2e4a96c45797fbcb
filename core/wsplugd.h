/*
 * wsplugd's private header: every core type and prototype, grouped by the
 * file that defines them.  Function prefixes match file names.
 */
#ifndef WSPLUGD_H
#define WSPLUGD_H

/* struct wsp_conn embeds a struct event.  Before <sys/queue.h>: this
 * header undefines a TAILQ_ENTRY it did not define whenever an earlier
 * libevent header (keyvalq_struct.h, via http.h) defined its own. */
#include <event2/event_struct.h>

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/queue.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <wsplugd/plugin.h>

struct evbuffer;
struct event_base;
struct ssl_st;     /* OpenSSL's SSL, only tls.c looks inside */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct evconnlistener;

#define WSP_PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))

#ifndef TAILQ_FOREACH_SAFE /* glibc's <sys/queue.h> lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                        \
	for ((var) = TAILQ_FIRST((head));                                 \
	    (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

/* errors.c: a list of "FILE:LINE: message" strings */

struct wsp_errors {
	char **msg;
	size_t n;
};

/* file may be NULL (then no prefix), line 0 (then FILE: only). */
void errors_add(struct wsp_errors *e, const char *file, int line,
    const char *fmt, ...) WSP_PRINTFLIKE(4, 5);
void errors_vadd(struct wsp_errors *e, const char *file, int line,
    const char *fmt, va_list ap) WSP_PRINTFLIKE(4, 0);
void errors_clear(struct wsp_errors *e);

/* utf8.c: incremental UTF-8 validation (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) */

#define UTF8_ACCEPT 0
#define UTF8_REJECT 1

/* Feed n bytes; returns the new state.  UTF8_REJECT is sticky.  A complete
 * text ends in UTF8_ACCEPT; any other state means a truncated sequence. */
uint32_t utf8_validate(uint32_t state, const uint8_t *p, size_t n);
/* Length of the character at p (n > 0): 1..4 valid, 0 invalid (replace a
 * byte), -1 a valid start cut short by n (drop the rest). */
int utf8_char_len(const uint8_t *p, size_t n);

/* ws_codec.c: RFC 6455 framing, sans-IO: bytes in, events out */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

#define WS_CLOSE_NO_STATUS 1005 /* never on the wire */
#define WS_CLOSE_ABNORMAL 1006  /* never on the wire */
#define WS_MAX_HEADER 14
#define WS_RSV1 0x40 /* first header byte: permessage-deflate's bit */
#define WS_MAX_CONTROL 125

enum ws_ev_kind {
	WS_EV_NONE,    /* everything given was consumed; feed more */
	WS_EV_DATA,    /* a chunk of a text or binary message */
	WS_EV_CONTROL, /* a complete close, ping or pong frame */
	WS_EV_ERROR,   /* fail the connection with close_code */
};

struct ws_event {
	enum ws_ev_kind kind;
	uint8_t opcode; /* DATA: WS_OP_TEXT or WS_OP_BINARY of the message;
	                   CONTROL: WS_OP_CLOSE, WS_OP_PING or WS_OP_PONG */
	int fin;        /* DATA: this chunk ends the message */
	uint8_t compressed; /* DATA: the message has RSV1 (permessage-deflate):
	                       not UTF-8 checked, its limit is on inflation */
	uint8_t *data;  /* DATA: unmasked, in place, inside the caller's
	                   buffer; CONTROL: the same when the body came in
	                   one piece, else inside the decoder; either way
	                   valid until the next call */
	size_t len;
	/* CONTROL close: the peer's code (WS_CLOSE_NO_STATUS when the body is
	 * empty), reason = data + 2, reason_len = len - 2 (0 if len == 0).
	 * ERROR: the code to close with. */
	uint16_t close_code;
	const char *reason; /* ERROR: static text for logs and the close frame */
};

struct ws_decoder {
	uint64_t max_message; /* bytes; 0 = no limit */
	uint8_t rsv1_ok;      /* permessage-deflate was negotiated */
	/* private state */
	uint8_t hdr[WS_MAX_HEADER];
	uint8_t hlen;
	uint8_t opcode; /* opcode of the frame being read */
	uint8_t fin;
	uint8_t in_payload;
	uint8_t mask[4];
	uint8_t mpos;
	uint8_t msg_opcode; /* TEXT/BINARY while a message is open, else 0 */
	uint8_t msg_compressed; /* the open message had RSV1 */
	uint8_t failed;
	uint64_t remaining; /* payload bytes of this frame still to come */
	uint64_t msg_len;   /* bytes of the open message so far */
	uint32_t utf8;
	uint8_t ctl_len;
	uint8_t *ctl; /* a control body split across calls, only meanwhile */
};

void ws_decoder_init(struct ws_decoder *d, uint64_t max_message);
/* Free what the decoder holds; a zeroed decoder may be given too. */
void ws_decoder_fini(struct ws_decoder *d);
/* Consume bytes from in (which is unmasked in place) and stop at the first
 * event; returns the count consumed.  Call again with the rest.  After an
 * ERROR every call returns the same ERROR.  A control frame split across
 * calls holds a buffer until the call after its event, so a caller that
 * stops at a CONTROL event with nothing left should call once more with
 * len 0 (it returns NONE) rather than keep the buffer while idle. */
size_t ws_decode(struct ws_decoder *d, uint8_t *in, size_t len,
    struct ws_event *ev);
/* Write a frame header; mask NULL for server frames. Returns its length. */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], int fin, uint8_t opcode,
    uint64_t len, const uint8_t *mask);
/* XOR p with mask starting at mask offset off (0..3). */
void ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off);
/* Body of a close frame: code then reason, truncated to fit 125 bytes
 * without splitting a UTF-8 sequence.  Returns its length. */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code,
    const char *reason, size_t reason_len);
/* May this code appear in a received close frame (RFC 6455 7.4)? */
int ws_close_code_valid(unsigned code);

/* http_upgrade.c: the opening handshake, strict and bounded */

struct http_str {
	const char *p; /* points into the parsed buffer; not NUL-terminated */
	size_t n;
};

#define HTTP_MAX_PROTOCOL_HEADERS 8

struct http_request {
	struct http_str method;
	struct http_str target; /* as sent */
	struct http_str path;   /* target up to '?' */
	struct http_str host;
	struct http_str key;     /* Sec-WebSocket-Key */
	struct http_str version; /* Sec-WebSocket-Version */
	struct http_str origin;
	struct http_str user_agent;
	struct http_str protocols[HTTP_MAX_PROTOCOL_HEADERS];
	size_t nprotocols;
	/* Sec-WebSocket-Extensions, each header as sent; more than fit sets
	 * extensions_overflow (the extensions are refused, not the request) */
	struct http_str extensions[HTTP_MAX_PROTOCOL_HEADERS];
	size_t nextensions;
	int extensions_overflow;
	int connection_upgrade; /* Connection lists the "upgrade" token */
	int upgrade_websocket;  /* Upgrade lists the "websocket" token */
};

/* Length of the request head up to and including the blank line, or 0
 * when buf does not hold a complete head yet.  A bare LF ends the head
 * early (up to and including it), for http_request_parse() to refuse. */
size_t http_head_length(const char *buf, size_t len);
/* Parse a complete head.  Returns 0, or 400 with *why_r set. */
int http_request_parse(const char *buf, size_t len, struct http_request *req,
    const char **why_r);
/* Decide whether a parsed request may upgrade on path: 0 yes, else the
 * status (404, 405, 400, 426) with *why_r set. */
int http_upgrade_check(const struct http_request *req, const char *path,
    const char **why_r);
/* Sec-WebSocket-Accept for key: 28 base64 characters and a NUL. */
void http_accept_key(const struct http_str *key, char out[29]);
/* Append a 101 response; protocol and extensions may be NULL. */
void http_response_101(struct evbuffer *out, const char accept[29],
    const char *protocol, const char *extensions);
/* Append an error response with a short text body; adds
 * Sec-WebSocket-Version: 13 to a 426, Allow to a 405, and Retry-After with
 * the CORS headers that let a page read it to a 503. */
void http_response_error(struct evbuffer *out, int status, const char *why);
const char *http_status_text(int status);
#define HTTP_WELLKNOWN_PATH "/.well-known/wsplugd"
/* Answer a GET or HEAD of HTTP_WELLKNOWN_PATH into out: the discovery
 * document naming path (200), or 403 when !origin_ok.  Returns the status,
 * or 0 (nothing written) when req is not for the document. */
int http_wellknown(const struct http_request *req, const char *path,
    int origin_ok, struct evbuffer *out);

/* config_file.c: the INI file's lines through inih, with FILE:LINE */

/* Fill file, errs and the hooks, zero the rest, then config_file_read(). */
struct config_reader {
	const char *file;
	struct wsp_errors *errs;
	int failed;  /* an error was reported (errors_add may drop one) */
	int lineno;  /* the line being handled */
	/* A [header]'s name, or NULL for a header the reader rejected (its
	 * keys should be skipped); a key = value line. */
	void (*section)(void *arg, const char *name);
	void (*key)(void *arg, const char *name, const char *value);
	void *arg;
	/* private */
	FILE *fp;
	char *buf; /* the current line, whole */
	size_t bufsz;
	size_t len; /* bytes of buf that are the line */
	size_t off; /* bytes of it already given to inih */
	int eof;
	int read_errno;
	int kv_wanted; /* the current line is neither blank, comment nor
	                  header, so inih must call the handler for it */
	int kv_seen;
	int *syntax; /* lines reported as syntax errors, ascending */
	size_t nsyntax;
};

/* Read the whole file, calling the hooks; 0, or -1 (with an error) when
 * it could not be opened or read to its end. */
int config_file_read(struct config_reader *r);
void config_file_error(struct config_reader *r, int line, const char *fmt,
    ...) WSP_PRINTFLIKE(3, 4);
void config_file_verror(struct config_reader *r, int line, const char *fmt,
    va_list ap) WSP_PRINTFLIKE(3, 0);

/* deflate.c: permessage-deflate negotiation (RFC 7692), pure */

#define DEFLATE_ANSWER_MAX 160 /* the longest answer is 129 with its NUL */

/* What the server allows: the configuration, or less near the budget. */
struct deflate_policy {
	uint8_t server_wbits;     /* 9..15: the most we compress with */
	uint8_t client_wbits;     /* 8..15: the most we let the client use */
	uint8_t context_takeover; /* allowed in both directions */
};

/* What was agreed. */
struct deflate_params {
	uint8_t server_no_takeover; /* reset our compressor per message */
	uint8_t client_no_takeover; /* the client resets its own */
	uint8_t server_wbits;       /* window we compress with */
	uint8_t client_wbits;       /* window the client may use */
	uint8_t answer_server_wbits, answer_client_wbits; /* in the 101 */
};

/* The first acceptable permessage-deflate offer among the n header values
 * (in order): 1 with *out set, or 0 to answer without the extension. */
int deflate_negotiate(const struct http_str *hdrs, size_t n,
    const struct deflate_policy *pol, struct deflate_params *out);
/* The Sec-WebSocket-Extensions value for p, NUL-terminated; its length,
 * or 0 when size is too small. */
size_t deflate_answer(const struct deflate_params *p, char *buf, size_t size);

/* config.c: what the INI file means, validated whole */

enum log_format { LOG_FORMAT_LOGFMT, LOG_FORMAT_JSON };
enum log_target {
	LOG_TARGET_STDERR,
	LOG_TARGET_SYSLOG,
	LOG_TARGET_FILE,
	LOG_TARGET_JOURNAL, /* only when built with libsystemd */
};

struct wsp_listen_addr {
	struct sockaddr_storage ss;
	socklen_t sslen;
	char *text; /* as written, for logs */
	int line;
	int tls; /* "ADDRESS tls": served over TLS with [tls]'s certificate */
};

/* [tls]: the files are resolved paths; each *_line is where it was set
 * (0: not set), for FILE:LINE when tls.c finds a problem in the file. */
struct wsp_tls_config {
	char *certificate; /* PEM, the full chain */
	char *key;
	char *ciphers;      /* TLS 1.2 cipher list, NULL: OpenSSL's */
	char *ciphersuites; /* TLS 1.3 suites, NULL: OpenSSL's */
	char *ocsp_staple;  /* a DER OCSP response to staple, or NULL */
	int min_version;    /* 12 or 13 */
	int session_tickets;
	int ktls;           /* ktls = auto: SSL_OP_ENABLE_KTLS */
	int certificate_line, key_line, ciphers_line, ciphersuites_line;
	int ocsp_staple_line;
};

struct wsp_kv {
	char *key;
	char *value;
	int line;
	int used; /* set by the plugin getters */
};

struct wsp_section {
	char *file;
	char *name; /* NAME of [plugin:NAME] */
	int line;   /* the section header */
	char *path; /* resolved .so path */
	int enabled;
	struct wsp_kv *kv; /* the plugin's own keys */
	size_t nkv;
	struct wsp_errors *errors; /* where getters report; set by plugin.c */
};

struct wsp_config {
	char *file;
	/* [server] */
	struct wsp_listen_addr *listen;
	size_t nlisten;
	char *path;
	char **origins;
	size_t norigins;
	char **subprotocols;
	size_t nsubprotocols;
	uint64_t max_connections;
	uint64_t max_connections_per_ip; /* 0 = no limit */
	uint64_t max_message_size;       /* bytes */
	uint64_t max_header_size;        /* bytes of request head */
	uint64_t max_output_buffer;      /* bytes queued per connection */
	uint64_t handshake_timeout;      /* ms */
	uint64_t shutdown_timeout;       /* ms */
	uint64_t slow_callback;          /* ms */
	uint64_t workers;                /* processes; 1: no master */
	int workers_line;                /* of workers, 0 for the default */
	uint64_t worker_watchdog;        /* ms; 0 = never */
	char *user, *group; /* NULL: stay who we were started as */
	uid_t uid;
	gid_t gid;
	int user_line;
	/* [keepalive] */
	uint64_t ping_interval;  /* ms; 0 = never ping */
	uint64_t sweep_interval; /* ms */
	uint64_t idle_timeout;   /* ms; 0 = never reap */
	/* [log] */
	int log_level; /* enum wsp_log_level */
	enum log_format log_format;
	enum log_target log_target;
	char *log_file; /* for LOG_TARGET_FILE */
	int log_target_line; /* of [log] target, 0 for the default */
	/* [deflate] (booleans as 0 or 1) */
	uint64_t deflate_enabled;
	uint64_t deflate_server_wbits, deflate_client_wbits;
	uint64_t deflate_context_takeover;
	uint64_t deflate_level, deflate_mem_level;
	uint64_t deflate_threshold;      /* bytes */
	uint64_t deflate_context_budget; /* bytes of full contexts */
	/* [admin] */
	struct wsp_listen_addr *admin_listen; /* none: the listener is off */
	size_t nadmin_listen;
	char **admin_hosts; /* Host values allowed besides the address */
	size_t nadmin_hosts;
	uint64_t admin_max_connections;
	uint64_t admin_timeout; /* ms from accept to the end of a request */
	/* [tls] */
	struct wsp_tls_config tls;
	int ntls_listen; /* of listen, those with the tls flag */
	/* [plugins] */
	char *plugin_dir;
	/* [plugin:NAME], in file order */
	struct wsp_section *plugins;
	size_t nplugins;
};

/* Parse and validate file.  Returns NULL and fills errs on any error. */
struct wsp_config *config_load(const char *file, const char *default_plugin_dir,
    struct wsp_errors *errs);
void config_free(struct wsp_config *cfg);

/* privdrop.c: [server] user and group, once the listeners are bound */

/* Switch to cfg's user and group and clear every capability; 0 when no
 * user is configured; -1 with errs filled. */
int privdrop_apply(const struct wsp_config *cfg, struct wsp_errors *errs);
/* On reload: -1 (errs filled) when cfg asks for another identity than
 * the one dropped to. */
int privdrop_reload_check(const struct wsp_config *cfg,
    struct wsp_errors *errs);
/* For a bind error err: why it may have failed after the switch, or "". */
const char *privdrop_hint(int err);

/* trust.c: files trusted only when only root or the daemon's user can
 * change them (as sshd trusts its own) */

/* -U: report untrusted files as warnings, for development trees. */
void trust_relax(int relax);
/* NULL when path, its target and every directory above them are safe for
 * a daemon running as uid; else the reason, written into buf. */
const char *trust_check(const char *path, uid_t uid, char *buf, size_t len);
/* The configuration file and every enabled plugin's file: 0, or -1 with
 * errs filled ("FILE:LINE: [plugin:NAME] reason", "FILE: reason"). */
int trust_config(const struct wsp_config *cfg, uid_t uid,
    struct wsp_errors *errs);

/* config_value.c: the syntax of values, shared with the plugin getters */

#ifndef nitems
#define nitems(a) (sizeof(a) / sizeof((a)[0]))
#endif
#define KIB 1024ULL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define MS_SEC 1000ULL
#define MS_MIN (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY (24 * MS_HOUR)
#define CONFIG_SHOW_MAX 64 /* bytes of a bad value quoted in a message */
#define CONFIG_SHOW_SIZE (CONFIG_SHOW_MAX + 4)
#define CONFIG_MAX_PATH 256
#define CONFIG_MAX_PLUGIN_NAME 64
#define CONFIG_MAX_WORKERS 256

struct config_unit {
	const char *name;
	uint64_t mult;
};

extern const struct config_unit config_duration_units[];
extern const struct config_unit config_size_units[];

/* Parsers: 0 or -1, never a message. */
int config_parse_duration(const char *s, uint64_t *ms_r);
int config_parse_size(const char *s, uint64_t *bytes_r);
int config_parse_bool(const char *s, int *value_r);
int config_parse_uint(const char *s, uint64_t max, uint64_t *value_r);
int config_parse_listen(const char *s, struct wsp_listen_addr *addr_r);
/* Is (ss, len), as a listener keeps it, the address a? */
int config_listen_same(const struct sockaddr_storage *ss, socklen_t len,
    const struct wsp_listen_addr *a);
/* Digits and one unit of units (a bare 0 too when zero_bare); on -1,
 * *overflow_r tells a well-formed but too large value from junk. */
int config_parse_units(const char *s, const struct config_unit *units,
    int zero_bare, uint64_t *value_r, int *overflow_r);
/* s cut to CONFIG_SHOW_MAX with control characters as '?', in buf of
 * CONFIG_SHOW_SIZE bytes: safe to quote in an error. */
const char *config_show(const char *s, char *buf);
int config_is_space(int c);
int config_all_digits(const char *s);
/* 25000 -> "25s": the largest unit that divides evenly. */
const char *config_fmt_duration(uint64_t ms, char *buf, size_t sz);
char *config_path_join(const char *dir, const char *name);
char *config_path_dirname(const char *file);
/* Lists separated by whitespace and/or commas: the next entry or NULL. */
char *config_list_next(char **sp);
int config_strv_add(char ***v, size_t *n, const char *s);
void config_strv_free(char **v, size_t n);
int config_valid_url_path(const char *s);
int config_valid_origin(const char *s);   /* scheme://host[:port] or null */
int config_valid_token(const char *s);    /* RFC 7230 token */
int config_valid_plugin_name(const char *s);

/* log.c: one line per event, logfmt or JSON; the only global besides the
 * plugin generation, because every file logs */

int log_init(int level, enum log_format format, enum log_target target,
    const char *file, const char *ident);
int log_reopen(void); /* SIGUSR1: reopen the log file */
/* Reload: prepare opens cfg's log file (the one step that can fail, with
 * FILE:LINE in errs) and changes nothing; commit switches every line to
 * cfg's level, format and target; abort closes what prepare opened. */
int log_reload_prepare(const struct wsp_config *cfg, struct wsp_errors *errs);
void log_reload_commit(const struct wsp_config *cfg);
void log_reload_abort(void);
void log_fini(void);
/* Gather stderr and file lines per turn of base's loop; log_detach writes
 * what is gathered and goes back to a write per line. */
int log_attach(struct event_base *base);
void log_detach(void);
int log_enabled(int level);
/* libevent's own messages become lines of event libevent. */
void log_libevent(void);
/* Build a line: log_begin returns NULL when level is filtered out, and
 * every other call accepts NULL, so call sites need no test. */
struct log_line *log_begin(int level, const char *event);
void log_str(struct log_line *l, const char *key, const char *val);
void log_strn(struct log_line *l, const char *key, const char *val, size_t n);
void log_int(struct log_line *l, const char *key, long long val);
void log_uint(struct log_line *l, const char *key, unsigned long long val);
void log_end(struct log_line *l);
/* A line with event and a formatted msg= field. */
void log_msg(int level, const char *event, const char *fmt, ...)
    WSP_PRINTFLIKE(3, 4);
const char *log_level_name(int level);
/* In worker n (1..): every line carries worker=n, and lines gathered per
 * turn are written PIPE_BUF bytes at most, so processes never mix them. */
void log_set_worker(int n);

/* clock.c: cached clocks */

uint64_t clock_mono_ms(void); /* monotonic, for deadlines */
int64_t clock_wall_ms(void);  /* Unix time, for timestamps */

/* keepalive.c: FIFO deadline queues (all entries of a queue share one
 * interval, so appending keeps them sorted: O(1) per connection and one
 * timer per queue) and the idle sweep */

struct wsp_conn;
struct wsp_server;

struct deadline_queue {
	TAILQ_HEAD(, wsp_conn) head;
	uint64_t interval; /* ms */
	struct event *timer;
	void (*expire)(struct wsp_conn *);
	const char *name;
};

int dq_init(struct deadline_queue *q, struct event_base *base,
    const char *name, uint64_t interval, void (*expire)(struct wsp_conn *));
void dq_fini(struct deadline_queue *q);
/* Move c to the tail of q (deadline now + interval); NULL q = none. */
void dq_push(struct deadline_queue *q, struct wsp_conn *c);
void dq_remove(struct wsp_conn *c);
/* Arm q's timer for its head (after deadlines were moved earlier). */
void dq_rearm(struct deadline_queue *q);
/* The sweep hands idle connections to srv->sweep_expire. */
int keepalive_start(struct wsp_server *srv);
/* Reload: prepare makes cfg's sweep (it cannot fire before commit);
 * commit (srv->cfg is cfg) swaps it in and moves the deadlines to the new
 * intervals; abort frees it. */
int keepalive_reload_prepare(struct wsp_server *srv,
    const struct wsp_config *cfg, struct wsp_errors *errs);
void keepalive_reload_commit(struct wsp_server *srv);
void keepalive_reload_abort(struct wsp_server *srv);
void keepalive_stop(struct wsp_server *srv);

/* registry.c: established connections, ids and per-IP counts */

struct ip_count;

struct registry {
	TAILQ_HEAD(, wsp_conn) conns;
	size_t count;
	struct ip_count *by_ip; /* uthash */
	uint8_t rnd[4096];      /* getrandom() in bulk, 16 bytes per id */
	size_t rnd_used;
};

void registry_init(struct registry *r);
void registry_fini(struct registry *r);
void registry_new_id(struct registry *r, char out[33]);
void registry_add(struct registry *r, struct wsp_conn *c);
void registry_remove(struct registry *r, struct wsp_conn *c);
size_t registry_ip_count(struct registry *r, const char *ip);
int registry_ip_ref(struct registry *r, const char *ip);
void registry_ip_unref(struct registry *r, const char *ip);

/* zstream.c: permessage-deflate's zlib streams, made lazily, pooled
 * without context takeover, full contexts counted against a budget */

struct zstream_pool;
struct z_stream_s;

struct zstream_stats {
	uint64_t conns;      /* connections that negotiated the extension */
	uint64_t full_conns; /* of those, with a full context reserved */
	uint64_t full_bytes; /* reserved for full contexts */
	uint64_t zlib_bytes; /* what zlib holds now, every stream */
	uint64_t compressed; /* messages compressed */
	uint64_t reused;     /* sends that reused the last compression */
	uint64_t tight;      /* handshakes answered tight for the budget */
};

/* One connection's side of the extension; the streams are NULL until a
 * compressed message needs them. */
struct zstream_conn {
	struct deflate_params p;
	uint8_t level, mem_level;
	uint8_t rx_open;  /* a compressed message is being inflated */
	uint8_t rx_ended; /* and its deflate stream ended (BFINAL) */
	uint32_t utf8;
	size_t threshold; /* smaller messages go plain */
	uint64_t reserved; /* bytes counted against the budget */
	struct z_stream_s *tx, *rx;
};

/* Where a compressed message is inflated: the connection's buffer. */
struct zstream_msg {
	uint8_t **buf;
	size_t *len, *cap;
	uint64_t max; /* bytes; 0 = no limit */
	int text;     /* UTF-8 check the output */
};

/* Negotiate for req: 0 with *zs_r and answer set when accepted, 0 with
 * *zs_r NULL when not, -1 out of memory. */
int zstream_accept(struct wsp_server *srv, const struct http_request *req,
    struct zstream_conn **zs_r, char answer[DEFLATE_ANSWER_MAX]);
void zstream_conn_free(struct wsp_server *srv, struct zstream_conn *z);
/* Bytes a connection with p may hold for good (0 without takeover). */
uint64_t zstream_full_cost(const struct deflate_params *p,
    unsigned mem_level);
/* A whole message: 1 with the compressed bytes in *out_r (valid until
 * the next call), 0 to send it plain (below the threshold, or no memory
 * to compress). */
int zstream_compress(struct wsp_server *srv, struct zstream_conn *z,
    const void *data, size_t n, const uint8_t **out_r, size_t *len_r);
/* A chunk of a compressed message onto m; fin ends the message.  0, or
 * the close code (1007, 1009, 1011) with *why set. */
int zstream_inflate(struct wsp_server *srv, struct zstream_conn *z,
    const uint8_t *in, size_t n, int fin, struct zstream_msg *m,
    const char **why);
const struct zstream_stats *zstream_stats(const struct wsp_server *srv);
void zstream_pool_free(struct wsp_server *srv);

/* conn.c: one connection's state machine, which calls nothing above it:
 * what it has to tell goes through the hooks its owner set */

struct conn_hooks {
	/* upgraded and registered: greet it */
	void (*opened)(struct wsp_conn *c);
	/* a whole message, borrowed: data is valid only for the call and
	 * may be modified */
	void (*message)(struct wsp_server *srv, struct wsp_conn *c,
	    uint8_t opcode, uint8_t *data, size_t len);
	/* an opened connection ended with code */
	void (*closed)(struct wsp_conn *c, uint16_t code);
	/* a connection was freed */
	void (*gone)(struct wsp_server *srv);
	/* A valid request the policy admitted, before the 101 (head is the
	 * request head, head_len bytes; proto the subprotocol chosen or
	 * NULL): 0 to upgrade now, CONN_UPGRADE_WAIT when the answer comes
	 * later through conn_upgrade_resume, or an HTTP status to refuse
	 * with (*why_r and *by_r borrowed until upgrade_end).  May be NULL. */
	int (*upgrade)(struct wsp_conn *c, const struct http_request *req,
	    const char *head, size_t head_len, const char *proto,
	    const char **why_r, const char **by_r);
	/* After conn_upgrade_resume: the answer (0 or the status to refuse
	 * with, *why_r and *by_r borrowed until upgrade_end) and the length
	 * of the request head, which was given to upgrade. */
	int (*upgrade_result)(struct wsp_conn *c, size_t *head_len_r,
	    const char **why_r, const char **by_r);
	/* The handshake is over, whatever its end, for a connection whose
	 * c->upgrade is set: drop it (and tell a plugin still deciding). */
	void (*upgrade_end)(struct wsp_conn *c);
};

#define CONN_UPGRADE_WAIT 1

enum conn_state {
	CONN_HANDSHAKE, /* reading the request head */
	CONN_OPEN,      /* WebSocket established */
	CONN_CLOSING,   /* our close frame sent, waiting for the peer's */
	CONN_LINGER,    /* flushing output, then SHUT_WR and drain to EOF */
};

/* A request target, shared by reference count: every connection upgraded
 * on exactly the configured path holds the server's one copy of it, which
 * outlives a reload that changes the path for as long as they do. */
struct conn_path {
	unsigned refs;
	char s[];
};

struct wsp_conn {
	struct wsp_server *srv;
	int fd;
	enum conn_state state;
	unsigned opened : 1;       /* plugins saw open (and will see close) */
	unsigned in_read : 1;      /* inside its read handler: flush later */
	unsigned want_write : 1;   /* EV_WRITE is registered */
	unsigned flush_pending : 1;
	unsigned msg_open : 1;     /* a fragmented message is being built */
	unsigned ip_counted : 1;
	unsigned held_conn : 1;    /* a place in srv->limits' conns */
	unsigned held_ip : 1;      /* a place in srv->limits' ip table */
	unsigned registered : 1;
	unsigned doomed : 1;       /* slow consumer: end it in its handler */
	unsigned shut_wr : 1;      /* lingering: our FIN is sent */
	unsigned tls_peeked : 1;   /* the first byte was a TLS record */
	unsigned tls_open : 1;     /* the TLS handshake is done */
	unsigned tls_wants_write : 1; /* a TLS read waits for writability */
	unsigned upgrade_wait : 1; /* a plugin decides: not reading */
	unsigned upgrade_ready : 1; /* it decided: act in the handler */
	uint8_t msg_opcode;
	uint16_t close_code;       /* for the close log line */
	struct event ev; /* embedded: one allocation less per connection */
	struct evbuffer *out;
	struct ssl_st *ssl;        /* a TLS listener's connection, else NULL */
	struct ws_decoder dec;
	uint8_t *msg; /* the message being reassembled, only while open */
	size_t msg_len, msg_cap;
	char *head; /* the request head, only during the handshake */
	size_t head_len, head_cap;
	TAILQ_ENTRY(wsp_conn) link; /* registry, or the server's pending list */
	TAILQ_ENTRY(wsp_conn) dq_link;
	struct deadline_queue *dq;
	uint64_t deadline;
	uint64_t last_activity; /* monotonic ms */
	uint64_t opened_mono;
	uint64_t ping_sent;      /* monotonic ms of the unanswered ping, 0 none */
	unsigned pings_missed;
	/* registry metadata */
	char id[33];
	char ip[46];
	uint16_t port;
	char *user_agent, *origin, *subprotocol;
	struct conn_path *path; /* the request target */
	int64_t connected_at_ms;
	int64_t last_activity_ms;
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
	json_t *attrs; /* { plugin: { key: value } }, created on first use */
	struct zstream_conn *zs; /* permessage-deflate, when negotiated */
	char *close_reason; /* ours, for the close log line; only once closing */
	char *user; /* set by a plugin, for logs and /connections */
	/* Only during the handshake, while plugins decide: upgrade.c's,
	 * which also keeps the answer (conn_hooks.upgrade_result), so an
	 * established connection pays one pointer for it. */
	struct upgrade *upgrade;
};

int conn_accept(struct wsp_server *srv, int fd, const struct sockaddr *sa,
    socklen_t salen, int tls);
int conn_send(struct wsp_conn *c, uint8_t opcode, const void *data, size_t len);
int conn_send_text(struct wsp_conn *c, const char *data, size_t len);
int conn_close(struct wsp_conn *c, uint16_t code, const char *reason);
void conn_refuse(struct wsp_conn *c, int status, const char *reason,
    const char *why);
/* reason (reason_len bytes, any of them NUL: a peer's close reason) is
 * logged escaped, never cut. */
void conn_end_n(struct wsp_conn *c, uint16_t code, const char *reason,
    size_t reason_len);
/* The same with a C string (NULL: no reason). */
void conn_end(struct wsp_conn *c, uint16_t code, const char *reason);
void conn_ping(struct wsp_conn *c);
void conn_free(struct wsp_conn *c);
void conn_expire_handshake(struct wsp_conn *c);
void conn_expire_ping(struct wsp_conn *c);
void conn_expire_linger(struct wsp_conn *c);
void conn_reap(struct wsp_conn *c, uint64_t idle_ms);
void conn_info(const struct wsp_conn *c, struct wsp_conn_info *info);
void conn_path_unref(struct conn_path *p);
/* The answer to a CONN_UPGRADE_WAIT is ready (upgrade_result): acted on
 * in the connection's own handler, never inside the caller. */
void conn_upgrade_resume(struct wsp_conn *c);

/* tls.c: TLS on the connection's own descriptor, at conn.c's I/O seams */

/* [tls]'s context, checked: NULL with errs filled (FILE:LINE), or NULL
 * and no error when no certificate is configured; warns gets a
 * certificate expiring soon. */
struct ssl_ctx_st *tls_ctx_new(const struct wsp_config *cfg,
    struct wsp_errors *errs, struct wsp_errors *warns);
void tls_ctx_free(struct ssl_ctx_st *ctx);
int tls_init(struct wsp_server *srv, struct wsp_errors *errs);
/* Reload: prepare builds and checks cfg's context (staged); commit makes
 * it the one new handshakes use (open sessions keep theirs); abort
 * frees it. */
int tls_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs);
void tls_reload_commit(struct wsp_server *srv);
void tls_reload_abort(struct wsp_server *srv);
void tls_free(struct wsp_server *srv);
int tls_conn_new(struct wsp_conn *c);
void tls_conn_free(struct wsp_conn *c);
enum {
	TLS_DONE,  /* handshake complete: read the HTTP request */
	TLS_AGAIN, /* wait for the socket (tls_wants_write: writable) */
	TLS_GONE,  /* failed or closed (logged, counted): free it */
	TLS_PLAIN, /* not TLS at all: the SSL object is gone, refuse */
};
int tls_accept(struct wsp_conn *c);
/* As read(2): bytes, 0 at EOF, -1 with errno (EAGAIN: try later). */
ssize_t tls_read(struct wsp_conn *c, void *buf, size_t len);
int tls_pending(const struct wsp_conn *c);
/* As evbuffer_write: bytes sent from out, or -1 with errno. */
int tls_write(struct wsp_conn *c, struct evbuffer *out);
void tls_close_notify(struct wsp_conn *c);
/* For logs and /connections: NULL on a plain connection. */
const char *tls_version(const struct wsp_conn *c);
const char *tls_cipher(const struct wsp_conn *c);
const char *tls_ktls(const struct wsp_conn *c);

/* admit.c: the handshake policy; each answers 0 or the status to refuse
 * with, a metrics label (reason) and the response text (why) */

int admit_accept(struct wsp_server *srv, const char **reason_r,
    const char **why_r);
/* The per-address limit alone: a TLS listener asks it at accept, before
 * a handshake's cost is spent on an address already at its limit. */
int admit_address(struct wsp_server *srv, const char *ip,
    const char **reason_r, const char **why_r);
/* Origin, per-address limit, and the subprotocol (NULL: none) chosen. */
/* ip_held: the address's shared place was taken at accept (a TLS
 * listener's connection, workers > 1): not checked again. */
int admit_request(struct wsp_server *srv, const char *ip, int ip_held,
    const struct http_request *req, const char **protocol_r,
    const char **reason_r, const char **why_r);
/* Give back what the connection holds in srv->limits (workers > 1):
 * when it stops counting (refused, ended, freed). */
void admit_release(struct wsp_conn *c);
/* Does the configured origins list admit o (any, when it is empty)? */
int admit_origin_allowed(const struct wsp_config *cfg,
    const struct http_str *o);
/* The metrics label of a status http_upgrade.c refused with. */
const char *admit_reason(int status);
/* Count, label and log (ws.refuse) a refusal. */
void admit_refused(struct wsp_server *srv, const char *ip, uint16_t port,
    int status, const char *reason, const char *why);
/* The same, naming the plugin that refused (by, or NULL). */
void admit_refused_by(struct wsp_server *srv, const char *ip, uint16_t port,
    int status, const char *reason, const char *why, const char *by);

/* limits.c: connection limits shared by worker processes */

struct limits;

/* Mapped shared before fork, for nworkers workers; NULL, errno set. */
struct limits *limits_new(size_t nworkers);
void limits_free(struct limits *l);
/* In worker i (0-based), before it takes anything. */
void limits_set_worker(struct limits *l, size_t i);
/* A place among max connections: 0, or -1 when they are all taken. */
int limits_conn_take(struct limits *l, uint64_t max);
void limits_conn_put(struct limits *l);
uint64_t limits_conn_count(const struct limits *l);
/* A place among max from ip: 0, -1 when they are all taken, 1 when the
 * table has no room for ip (then check per worker). */
int limits_ip_take(struct limits *l, const char *ip, uint64_t max);
void limits_ip_put(struct limits *l, const char *ip);
/* In the master, for a dead worker i: give back everything it held. */
void limits_worker_gone(struct limits *l, size_t i);
/* fdlimit.c: accept errors, the same for every listener: a reserve
 * descriptor to answer 503 at the descriptor limit, and a rate-limited
 * log line */

#define FDLIMIT_PAUSE_MS 100 /* how long a listener rests after an error */

int fdlimit_init(void); /* opens the reserve; -1 with errno */
void fdlimit_fini(void);
/* err is what accept() on the listening socket lfd (bound to addr, for
 * the log) failed with.  The caller then pauses that listener for
 * FDLIMIT_PAUSE_MS. */
void fdlimit_accept_error(int lfd, const char *addr, int err);

/* listen.c: accepting sockets, handed to srv->on_accept */

struct listener {
	TAILQ_ENTRY(listener) entry;
	struct evconnlistener *lev;
	struct wsp_server *srv;
	struct sockaddr_storage conf; /* as configured: reload matches it */
	socklen_t conf_len;
	int tls;       /* its connections speak TLS first */
	char addr[64]; /* bound address, with the kernel's port */
};
TAILQ_HEAD(listener_list, listener);

/* A bound socket for a, non-blocking and close-on-exec, listening when
 * backlog > 0, in a SO_REUSEPORT group when reuseport; the bound address
 * (with the kernel's port) as text in addr.  -1 with errno set. */
int listen_bind(const struct wsp_listen_addr *a, int backlog, int reuseport,
    char *addr, size_t addrlen);
/* 127.0.0.1:80 or [::1]:80 */
void listen_format_addr(const struct sockaddr *sa, char *out, size_t len);
int listen_open(struct wsp_server *srv, const struct wsp_config *cfg,
    const struct wsp_listen_addr *a, struct listener_list *out,
    struct wsp_errors *errs);
/* Reload: bind what cfg adds (staged); commit (srv->cfg is cfg) closes
 * what it dropped and serves the staged; abort closes the staged. */
int listen_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs);
void listen_reload_commit(struct wsp_server *srv);
void listen_reload_abort(struct wsp_server *srv);
void listen_free(struct listener *li);
void listen_close_all(struct listener_list *l);
void listen_pause(struct wsp_server *srv, int pause);

/* json_write.c: compact JSON text, as json_dumps(JSON_COMPACT) writes it */

struct outbuf {
	char *p;
	size_t len, cap;
};

/* Append v's text to b; -1 (b unchanged) on allocation failure or a
 * tree over 2048 levels deep (which a cycle is). */
int json_write(struct outbuf *b, const json_t *v);

/* dispatch.c: routing a complete message to its plugin */

#define DISPATCH_TYPE_MAX 256 /* longer types take the tree path */
#define DISPATCH_MSG_MAGIC 0x6d736733u

/* A message as dispatch.c lends it: the plugin's view first, so that
 * host.c's message_json finds the rest from the pointer the plugin has. */
struct dispatch_msg {
	struct wsp_message m;
	uint32_t magic; /* DISPATCH_MSG_MAGIC: m is one of ours */
	int tried;      /* the tree was built, or failed to be */
	json_t *tree;   /* owned: dispatch.c frees it after the call */
	char type[DISPATCH_TYPE_MAX];
};

/* Borrowed: data is valid only for the call; it may be modified. */
void dispatch_message(struct wsp_server *srv, struct wsp_conn *c,
    uint8_t opcode, uint8_t *data, size_t len);
void dispatch_error(struct wsp_conn *c, const char *code, json_t *id,
    const char *fmt, ...) WSP_PRINTFLIKE(4, 5);

/* json_read.c: message text to a jansson tree */

/* Exactly json_loadb(buf, len, 0, err): the same tree, or NULL and
 * jansson's own error; the common messages take a faster path. */
json_t *json_read(const char *buf, size_t len, json_error_t *err);
/* The fast path alone: NULL when it declines the input (for tests). */
json_t *json_read_fast(const char *buf, size_t len);

/* json_scan.c: a message's "type" and "id" without a tree */

struct json_scan {
	const char *type;  /* the type string's bytes, in the text; no NUL */
	size_t type_len;
	const char *id;    /* the "id" value's JSON text, or NULL */
	size_t id_len;
	/* private */
	int type_seen, type_escaped;
};

/* 0 when buf is a JSON object jansson would take whole, with a top-level
 * "type" string without escapes (out filled); -1 when the scan declines,
 * and the tree must be built to answer (out zeroed).  Reads buf only. */
int json_scan(const char *buf, size_t len, struct json_scan *out);

/* attrs.c: per-connection attributes, { plugin: { key: value } } */

int attrs_set(struct wsp_conn *c, const char *ns, const char *key,
    const json_t *value); /* a deep copy; NULL value deletes */
json_t *attrs_get(const struct wsp_conn *c, const char *ns, const char *key);
/* Drop namespace ns from every registered connection. */
void attrs_release(struct registry *reg, const char *ns);
void attrs_free(struct wsp_conn *c);

/* plugin.c: loading a generation of plugins */

struct plugin_type; /* uthash: type -> plugin */

/* The plugin callback a process is in, for the master to name when a
 * worker dies: two relaxed stores around each call (plugin_enter,
 * plugin_leave), into memory the worker shares with its master.  A single
 * process points at its own copy, so the path is the same either way. */
enum plugin_callback {
	PLUGIN_CB_NONE, PLUGIN_CB_LOAD, PLUGIN_CB_UNLOAD, PLUGIN_CB_OPEN,
	PLUGIN_CB_ADOPT, PLUGIN_CB_CLOSE, PLUGIN_CB_MESSAGE, PLUGIN_CB_TIMER,
	PLUGIN_CB_UPGRADE, PLUGIN_CB_UPGRADE_CANCEL, PLUGIN_CB_RELOAD,
};
#define PLUGIN_CALL_NAMES 64 /* ids are reused round-robin past this */

struct plugin_calls {
	_Atomic uint32_t now; /* id << 8 | enum plugin_callback; 0 none */
	uint32_t next;        /* ids given so far */
	char names[PLUGIN_CALL_NAMES][CONFIG_MAX_PLUGIN_NAME + 1];
};

/* The store itself, a header inline so that timers.c, below plugin.c,
 * marks its calls into plugins without calling up into plugin.c. */
static inline void
plugin_calls_mark(struct plugin_calls *calls, uint32_t id,
    enum plugin_callback cb)
{
	atomic_store_explicit(&calls->now, cb == PLUGIN_CB_NONE ? 0 :
	    id << 8 | cb, memory_order_relaxed);
}

struct wsp_plugin_ctx {
	struct wsp_server *srv;
	char *name; /* the section's NAME */
	char *path;
	void *dl;
	int memfd; /* the private copy dl was opened from, or -1 */
	const struct wsp_plugin *desc;
	void *state;
	unsigned refs;    /* plugin sets holding this context */
	int loaded;       /* load succeeded: unload is owed */
	/* Only while this context loads (claim() is valid then only): the
	 * build's state, on the builder's stack.  A context carried over
	 * into a new set never gets one, so a build leaves nothing on the
	 * contexts it shares with the running set. */
	struct plugin_load *load;
	char **claims;    /* every type claimed, to carry over on reload */
	size_t nclaims;
	char *signature;  /* file identity and section, see plugin.c */
	uint32_t call_id; /* in srv->calls->names */
	TAILQ_HEAD(, wsp_timer) timers;
};

struct wsp_timer {
	TAILQ_ENTRY(wsp_timer) entry;
	struct wsp_plugin_ctx *ctx;
	struct event *ev;
	void (*fn)(void *);
	void *arg;
	unsigned repeat : 1;
	unsigned firing : 1;
	unsigned cancelled : 1;
};

struct plugin_load {
	struct plugin_set *set;          /* where claims go */
	const struct wsp_section *sec;   /* FILE:LINE of problems */
	struct wsp_errors *errs;         /* where problems go */
};

struct plugin_set {
	struct wsp_plugin_ctx **plugins; /* load order */
	size_t nplugins;
	struct plugin_type *types;
	size_t ntypes;
	struct wsp_plugin_ctx *catch_all;
	unsigned generation;
};

/* Build the set for cfg, carrying over from old (may be NULL) every plugin
 * whose file and section are unchanged.  NULL and errs filled on failure;
 * old is never modified. */
struct plugin_set *plugin_set_build(struct wsp_server *srv,
    struct wsp_config *cfg, struct plugin_set *old, struct wsp_errors *errs);
/* Unloads every plugin no other set holds. */
void plugin_set_free(struct plugin_set *set);
/* Reload: prepare builds cfg's set next to the running one (staged);
 * commit (srv->cfg is cfg) runs it: plugins gone lose their connection
 * attributes, new ones adopt every open connection, and counts says how
 * many were kept, loaded and unloaded; abort frees the staged set. */
struct plugin_reload_counts {
	size_t kept, loaded, unloaded;
	unsigned generation;
};
int plugin_reload_prepare(struct wsp_server *srv, struct wsp_config *cfg,
    struct wsp_errors *errs);
void plugin_reload_commit(struct wsp_server *srv,
    struct plugin_reload_counts *counts);
void plugin_reload_abort(struct wsp_server *srv);
struct wsp_plugin_ctx *plugin_set_lookup(struct plugin_set *set,
    const char *type);
int plugin_set_has(const struct plugin_set *set,
    const struct wsp_plugin_ctx *ctx);
/* Building blocks, also for tests that make sets without dlopen(). */
struct plugin_set *plugin_set_new(void);
int plugin_set_add(struct plugin_set *set, struct wsp_plugin_ctx *ctx);
void plugin_set_unclaim_missing(struct plugin_set *set);
struct wsp_plugin_ctx *plugin_ctx_new(struct wsp_server *srv,
    const char *name, const char *path);
/* A plugin compiled into the program (tests, fuzzers): desc and state as
 * a load would leave them, added to ld->set, and loading (claims go to
 * ld->set) until the caller sets ctx->load to NULL. */
struct wsp_plugin_ctx *plugin_ctx_builtin(struct wsp_server *srv,
    struct plugin_load *ld, const struct wsp_plugin *desc, void *state);
/* A claim made during load, into ctx->load->set; the host table's claim. */
int plugin_claim(struct wsp_plugin_ctx *ctx, const char *type);
void plugin_call_open(struct plugin_set *set, struct wsp_conn *c);
void plugin_call_adopt(struct wsp_plugin_ctx *ctx, struct wsp_conn *c);
void plugin_call_close(struct plugin_set *set, struct wsp_conn *c,
    uint16_t code);
void plugin_call_message(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const struct wsp_message *m);
int plugin_call_upgrade(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    const struct wsp_upgrade_request *req, const char **reason_r);
void plugin_call_upgrade_cancel(struct wsp_plugin_ctx *ctx,
    struct wsp_conn *c);
void plugin_call_reload(struct wsp_plugin_ctx *ctx);
/* What calls->now names: the plugin (or "") and the callback. */
const char *plugin_callback_name(uint32_t now);
const char *plugin_call_plugin(const struct plugin_calls *calls,
    uint32_t now);

/* upgrade.c: the plugins' say before the 101 */

struct upgrade;

/* conn_hooks.upgrade and .upgrade_end (server.c sets them). */
int upgrade_begin(struct wsp_conn *c, const struct http_request *req,
    const char *head, size_t head_len, const char *proto,
    const char **why_r, const char **by_r);
int upgrade_result(struct wsp_conn *c, size_t *head_len_r,
    const char **why_r, const char **by_r);
void upgrade_end(struct wsp_conn *c);
/* Host table entries answered here (server.c puts them in plugin_host). */
int upgrade_answer(struct wsp_plugin_ctx *ctx, struct wsp_conn *c,
    int status, const char *reason);
const char *upgrade_request_header(const struct wsp_conn *c,
    const char *name);

/* timers.c: a plugin's timers, listed on its context */

struct wsp_timer *timers_add(struct wsp_plugin_ctx *ctx, uint64_t after_ms,
    int repeat, void (*fn)(void *), void *arg);
void timers_cancel(struct wsp_timer *t);
/* Before unload: no callback into unmapped code may fire. */
void timers_cancel_all(struct wsp_plugin_ctx *ctx);

/* host.c: the function table plugins call (claim excepted: plugin.c) */

extern const struct wsp_host wsp_host_table;
int host_send_json(struct wsp_conn *c, const json_t *msg);

/* metrics.c: counters for the operator */

#define METRICS_CODES 32
#define METRICS_REASONS 14
#define METRICS_TLS_FAILS 5

struct metrics {
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
	uint64_t pings, reaps;
	uint64_t reloads_ok, reloads_failed;
	uint64_t refused[METRICS_REASONS]; /* by metrics_refuse_reasons[] */
	uint64_t tls_handshakes;
	uint64_t tls_failed[METRICS_TLS_FAILS]; /* by metrics_tls_reasons[] */
	struct {
		uint16_t code;
		uint64_t n;
	} closed[METRICS_CODES]; /* by close code; the last slot: others */
};

extern const char *const metrics_refuse_reasons[METRICS_REASONS];
extern const char *const metrics_tls_reasons[METRICS_TLS_FAILS];

void metrics_refused(struct wsp_server *srv, const char *reason);
void metrics_closed(struct wsp_server *srv, uint16_t code);
void metrics_message_in(struct wsp_server *srv, size_t bytes);
void metrics_message_out(struct wsp_server *srv, size_t bytes);
void metrics_ping(struct wsp_server *srv);
void metrics_tls_handshake(struct wsp_server *srv);
void metrics_tls_failed(struct wsp_server *srv, const char *reason);
void metrics_reaped(struct wsp_server *srv);
/* Count a reload that succeeded (ok) or failed; that kind's total. */
uint64_t metrics_reloaded(struct wsp_server *srv, int ok);
/* What /metrics counts, as one process sees it; with workers > 1 the sum
 * of every worker's (the gauges only of those alive). */
struct metrics_snap {
	struct metrics m;
	uint64_t active, pending, opened;
	uint64_t workers, workers_alive; /* 0, 0 with one process */
	struct zstream_stats z; /* permessage-deflate's gauges and counts */
};

void metrics_snapshot(struct wsp_server *srv, struct metrics_snap *out);
/* sum += x, close codes merged by code. */
void metrics_add(struct metrics_snap *sum, const struct metrics_snap *x);
/* A dead worker's snapshot keeps its counters, not its gauges. */
void metrics_snap_gone(struct metrics_snap *s);
/* Append the Prometheus text exposition (format 0.0.4); 0 or -1 when out
 * of memory.  srv->metrics_sum, when set, replaces this process's
 * snapshot with the daemon's. */
int metrics_render(struct wsp_server *srv, struct evbuffer *out);

/* admin.c: the admin listener, /healthz /metrics /connections over
 * libevent's evhttp */

struct admin;

/* Bind every [admin] listen address of srv->cfg; errors name FILE:LINE. */
int admin_init(struct wsp_server *srv, struct wsp_errors *errs);
/* Reload, in two steps like the listeners: bind the addresses cfg adds
 * (they serve at once: what they show is the running state), then either
 * commit (srv->cfg is the new config: close the addresses it dropped) or
 * abort (close what prepare bound). */
int admin_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs);
void admin_reload_commit(struct wsp_server *srv);
void admin_reload_abort(struct wsp_server *srv);
void admin_free(struct wsp_server *srv);

/* notify.c: sd_notify(3) to systemd; every call is a no-op without
 * libsystemd or when NOTIFY_SOCKET is unset */

struct notify;

int notify_start(struct wsp_server *srv); /* READY=1, status, watchdog */
void notify_reloading(struct wsp_server *srv);
void notify_ready(struct wsp_server *srv);
void notify_stopping(struct wsp_server *srv);
void notify_free(struct wsp_server *srv);

/* server.c: the server */

struct wsp_server {
	struct event_base *base;
	struct wsp_config *cfg;
	struct wsp_config *cfg_staged;  /* read by a reload's prepare */
	const char *config_file;        /* what SIGHUP reads again */
	int log_level_override;         /* -l, which a reload keeps; or -1 */
	const char *default_plugin_dir;
	struct listener_list listeners;
	struct listener_list listeners_staged; /* bound by a reload's prepare */
	struct registry reg;
	TAILQ_HEAD(, wsp_conn) pending; /* handshaking and lingering */
	size_t npending;
	size_t nhandshake; /* of pending, those still in the handshake */
	struct plugin_set *plugins;
	struct plugin_set *plugins_staged; /* built by a reload's prepare */
	struct deadline_queue dq_handshake, dq_ping, dq_linger;
	struct event *sweep;
	struct event *sweep_staged; /* made by a reload's prepare */
	struct event *accept_retry;
	struct event *sig_term, *sig_int, *sig_hup, *sig_usr1;
	struct event *shutdown_timer;
	struct conn_path *path; /* cfg->path, as connections share it; made
	                           on the first upgrade after a change */
	uint8_t *rbuf; /* one read buffer for every connection */
	size_t rbuf_size;
	struct outbuf jbuf; /* where outgoing JSON is serialized, reused */
	struct plugin_calls *calls; /* calls_own, or a worker's shared slot */
	struct plugin_calls calls_own;
	struct zstream_pool *zpool; /* permessage-deflate, made on first use */
	int draining;
	uint64_t started_mono;
	int64_t started_wall_ms; /* for process_start_time_seconds */
	struct admin *admin;
	struct notify *notify;
	struct ssl_ctx_st *tls_ctx;        /* NULL without [tls] certificate */
	struct ssl_ctx_st *tls_ctx_staged; /* built by a reload's prepare */
	/* Set by server_setup: the upper files lower ones report to. */
	const struct wsp_host *host; /* host_table, for plugin.c */
	struct wsp_host host_table;  /* host.c's, and upgrade.c's entries */
	struct wsp_host plugin_host; /* what plugins get: *host, claim
	                                answered by plugin.c */
	struct conn_hooks conn_hooks;
	int (*on_accept)(struct wsp_server *srv, int fd,
	    const struct sockaddr *sa, socklen_t salen, int tls); /* listen.c's */
	void (*sweep_expire)(struct wsp_conn *c, uint64_t idle_ms);
	/* Sockets for listen.c and admin.c: NULL is listen_bind; a worker's
	 * hands out what its master bound. */
	int (*bind)(struct wsp_server *srv, const struct wsp_listen_addr *a,
	    int backlog, char *addr, size_t addrlen);
	void *worker; /* workers.c's state, in a worker process */
	int admin_off; /* admin.c binds nothing: another process serves it */
	struct limits *limits; /* workers > 1: the daemon's counts */
	/* workers > 1, in the worker serving the admin listener: the whole
	 * daemon's view for /metrics and /healthz */
	void (*metrics_sum)(struct wsp_server *srv, struct metrics_snap *s);
	/* totals for logs and the shutdown summary */
	uint64_t total_opened, total_closed, total_refused, total_reaped;
	struct metrics metrics;
};

/* server.c */
/* What a worker process changes in a server (workers.c): setup runs right
 * after server_setup (before any plugin loads or socket binds). */
struct server_hooks {
	void (*setup)(struct wsp_server *srv, void *arg);
	void *arg;
};
/* The server without plugins, listeners, log or signals: the hooks, the
 * event base, buffers and deadline queues (-t, tests, fuzzers).  After -1,
 * server_free() releases what was made. */
int server_setup(struct wsp_server *srv, struct wsp_config *cfg);
int server_init(struct wsp_server *srv, struct wsp_config *cfg,
    const struct server_hooks *hooks, struct wsp_errors *errs);
int server_signals(struct wsp_server *srv);
void server_free(struct wsp_server *srv);
void server_maybe_done(struct wsp_server *srv);
void server_log_summary(struct wsp_server *srv);

/* workers.c: a master and N worker processes (workers > 1) */

/* main.c's: serve *cfgp in this process until told to stop. */
typedef int workers_serve_fn(struct wsp_config **cfgp, const char *file,
    int level, const struct server_hooks *hooks);
/* The master: bind, fork cfg->workers workers that each call serve,
 * supervise them, and return the exit status once they are gone. */
int workers_run(struct wsp_config **cfgp, const char *file, int level,
    const char *plugin_dir, workers_serve_fn *serve);

/* reload.c */
void server_reload(struct wsp_server *srv); /* prepare, then commit */
/* Read srv->config_file and prepare every module (into srv->cfg_staged):
 * 0, or -1 with the errors logged and nothing left prepared. */
int server_reload_prepare(struct wsp_server *srv);
void server_reload_commit(struct wsp_server *srv);
void server_reload_abort(struct wsp_server *srv);

#endif /* WSPLUGD_H */
