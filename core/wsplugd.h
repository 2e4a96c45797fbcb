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
#include <string.h>

#include <wsplugd/plugin.h>

struct evbuffer;
struct event_base;
struct ssl_st;     /* OpenSSL's SSL, only tls.c looks inside */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

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
/* The value of the four hex digits at p (a JSON string's u-escape), or
 * -1 unless four are there before end. */
long utf8_hex4(const unsigned char *p, const unsigned char *end);

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
#define WS_CLOSE_SERVICE_RESTART 1012 /* come back: see drain.c */
#define WS_CLOSE_TRY_AGAIN 1013       /* Try Again Later: shed */
#define WS_MAX_HEADER 14
#define WS_FIN 0x80  /* first header byte: the message's last frame */
#define WS_RSV1 0x40 /* first header byte: permessage-deflate's bit */
#define WS_OPCODE 0x0f /* first header byte: the opcode's bits */
#define WS_MASKED 0x80 /* second header byte: a masked payload */
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
/* Write a frame header; mask NULL for server frames. Returns its length.
 * Inline: every reply's header is written here, and with constant fin and
 * mask the compiler keeps only the length's branches. */
static inline size_t
ws_frame_header(uint8_t out[WS_MAX_HEADER], int fin, uint8_t opcode,
    uint64_t len, const uint8_t *mask)
{
	size_t n, i;

	out[0] = (fin ? WS_FIN : 0) | (opcode & WS_OPCODE);
	if (len < 126) {
		out[1] = (uint8_t)len;
		n = 2;
	} else if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask != NULL) {
		out[1] |= WS_MASKED;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}
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
/* The same response written flat into buf when it fits in cap bytes (no
 * NUL); returns its length either way, like snprintf. */
size_t http_response_101_flat(char *buf, size_t cap, const char accept[29],
    const char *protocol, const char *extensions);
/* Append an error response with a short text body; adds
 * Sec-WebSocket-Version: 13 to a 426, Allow to a 405, and Retry-After with
 * the CORS headers that let a page read it to a 503. */
void http_response_error(struct evbuffer *out, int status, const char *why);
/* The same with the Retry-After a 503 carries (seconds); a 410 gets the
 * CORS header that lets a page read it. */
void http_response_retry(struct evbuffer *out, int status, const char *why,
    unsigned retry_after_s);
const char *http_status_text(int status);
#define HTTP_WELLKNOWN_PATH "/.well-known/wsplugd"
/* Answer a GET or HEAD of HTTP_WELLKNOWN_PATH into out: the discovery
 * document naming path (200), or 403 when !origin_ok.  Returns the status,
 * or 0 (nothing written) when req is not for the document. */
int http_wellknown(const struct http_request *req, const char *path,
    int origin_ok, struct evbuffer *out);
/* The same document listing the endpoint in endpoints and the ngone
 * paths answered 410 in gone. */
int http_wellknown_gone(const struct http_request *req, const char *path,
    char *const *gone, size_t ngone, int origin_ok, struct evbuffer *out);

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

enum { BUS_BACKEND_LOCAL, BUS_BACKEND_REDIS };

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
	uint64_t max_buffer_memory;      /* bytes, every connection's */
	uint64_t handshake_timeout;      /* ms */
	uint64_t shutdown_timeout;       /* ms */
	uint64_t restart_spread;         /* ms: SIGQUIT closes over this */
	char **gone;                     /* paths answered 410 Gone */
	size_t ngone;
	int gone_line;
	uint64_t handover_timeout;       /* ms: SIGUSR2's successor */
	uint64_t slow_callback;          /* ms */
	uint64_t timer_slack;            /* ms, 0: as the daemon started */
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
	/* [bus] */
	int bus_backend;             /* BUS_BACKEND_* */
	uint64_t bus_history_size;   /* messages kept per channel */
	uint64_t bus_history_ttl;    /* ms a message stays in history */
	uint64_t bus_history_memory; /* bytes of history, every channel */
	int bus_backend_line;        /* of backend, 0 for the default */
	char *bus_redis;             /* host:port or /unix/path */
	char *bus_redis_user;        /* NULL: AUTH with the password only */
	char *bus_redis_password;    /* redis_password_file's first line */
	char *bus_redis_prefix;      /* NULL: "wsplugd:" */
	uint64_t bus_redis_db;
	uint64_t bus_redis_timeout;      /* ms: connect, and a command */
	uint64_t bus_redis_presence_ttl; /* ms */
	uint64_t bus_redis_queue;        /* bytes held while Redis is away */
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
/* Write what is gathered now: before a wait outside the loop. */
void log_sync(void);
int log_enabled(int level);
/* libevent's own messages become lines of event libevent. */
void log_libevent(void);
/* Build a line: log_begin returns NULL when level is filtered out, and
 * every other call accepts NULL, so call sites need no test. */
struct log_line *log_begin(int level, const char *event);
void log_kstr(struct log_line *l, const char *key, size_t klen,
    const char *val);
void log_kstrn(struct log_line *l, const char *key, size_t klen,
    const char *val, size_t n);
void log_knum(struct log_line *l, const char *key, size_t klen,
    unsigned long long u, int minus);
void log_end(struct log_line *l);
/* Macros, so that the length of a key, a literal at nearly every call
 * site, is counted by the compiler: two lines a handshake have 23 keys.
 * A key is evaluated twice: pass none with side effects. */
#define log_str(l, key, val) log_kstr((l), (key), __builtin_strlen(key), (val))
#define log_strn(l, key, val, n) \
	log_kstrn((l), (key), __builtin_strlen(key), (val), (n))
#define log_uint(l, key, val) \
	log_knum((l), (key), __builtin_strlen(key), (val), 0)
#define log_int(l, key, val) log_kint((l), (key), __builtin_strlen(key), (val))
void log_kint(struct log_line *l, const char *key, size_t klen,
    long long val);
/* A line with event and a formatted msg= field. */
void log_msg(int level, const char *event, const char *fmt, ...)
    WSP_PRINTFLIKE(3, 4);
const char *log_level_name(int level);
/* What a worker has gathered and not yet written, kept in memory it
 * shares with the master (workers.c), so that the lines of a worker that
 * dies (killed by the watchdog, a crash) are not lost with it: the
 * master writes them (log_salvage) before the worker's worker.exit.
 * len is stored after the bytes of a whole line, so a line the worker
 * was in the middle of is not among them. */
#define LOG_WORKER_PENDING 4096 /* PIPE_BUF on Linux */
struct log_pending {
	_Atomic size_t len;
	char buf[LOG_WORKER_PENDING];
};
/* In worker n (1..): every line carries worker=n, lines are gathered in
 * area, and written LOG_WORKER_PENDING bytes at most, one piece on a
 * pipe, so processes never mix them. */
void log_set_worker(int n, struct log_pending *area);
/* In the master, once the worker that gathered in area is dead: write
 * what it left there, after the master's own gathered lines, and empty
 * it.  A line may be written twice if the worker died between writing
 * its gathered lines and emptying area; none is lost. */
void log_salvage(struct log_pending *area);

/* clock.c: cached clocks */

uint64_t clock_mono_ms(void); /* monotonic, for deadlines */
int64_t clock_wall_ms(void);  /* Unix time, for timestamps */
void clock_timer_slack(uint64_t ms);

/* keepalive.c: FIFO deadline queues (all entries of a queue share one
 * interval, so appending keeps them sorted: O(1) per connection and one
 * timer per queue) and the idle sweep */

struct wsp_conn;
struct wsp_server;

struct deadline_queue {
	TAILQ_HEAD(, wsp_conn) head;
	uint64_t interval; /* ms */
	struct event *timer;
	uint64_t armed; /* the deadline timer is set for; 0: not set */
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
	TAILQ_HEAD(wsp_conn_list, wsp_conn) conns; /* opened order, but
	                         drain.c moves each it closes to the tail */
	size_t count;
	struct ip_count *by_ip; /* uthash */
	struct ip_count *ip_spare; /* entries kept for reuse, a list */
	size_t nip_spare;
	uint8_t rnd[4096];      /* getrandom() in bulk, 16 bytes per id */
	size_t rnd_used;
};

void registry_init(struct registry *r);
void registry_fini(struct registry *r);
void registry_new_id(struct registry *r, char out[33]);
void registry_add(struct registry *r, struct wsp_conn *c);
void registry_remove(struct registry *r, struct wsp_conn *c);
/* Move a registered c behind every other (drain.c's order of closing). */
void registry_move_tail(struct registry *r, struct wsp_conn *c);
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
/* Hand-over: can z move to another process (no context takeover either
 * way, between messages), and make its twin there; -1 when it cannot. */
int zstream_conn_movable(const struct zstream_conn *z);
int zstream_conn_restore(struct wsp_server *srv, const struct deflate_params *p,
    unsigned level, unsigned mem_level, size_t threshold,
    struct zstream_conn **zs_r);
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

/* membudget.c: max_buffer_memory, every output buffer and partial message
 * counted together, holders kept by size to shed the heaviest first */

#define MEMBUDGET_CHUNK (256 * KIB) /* what a worker takes from the total */
#define MEMBUDGET_MIN_VICTIM (4 * KIB) /* less is never shed */
/* How far a worker may go past its share while a heavier worker sheds
 * for it. */
#define MEMBUDGET_OVERDRAFT (4 * MEMBUDGET_CHUNK)
#define MEMBUDGET_AUTO_MIN (64 * MIB)
#define MEMBUDGET_AUTO_MAX (1 * GIB)

/* One connection's share; zeroed, it holds nothing. */
struct membudget_holder {
	uint64_t bytes;
	size_t slot; /* 1 + its index in the heap; 0: not in it */
	int pinned;  /* counted, never a victim again */
};

struct membudget {
	uint64_t limit; /* max_buffer_memory */
	uint64_t used;  /* what this process's holders hold */
	uint64_t held;  /* what it may hold: limit, or chunks taken */
	uint64_t goal;  /* shedding down to this; UINT64_MAX: not shedding */
	int shedding;   /* the caller is shedding: no new round inside it */
	uint64_t top;   /* heaviest holder's bytes as last published */
	struct limits *shared; /* workers > 1: the daemon's total */
	struct membudget_holder **heap; /* max-heap by bytes */
	size_t n, cap;
};

void membudget_init(struct membudget *mb, uint64_t limit,
    struct limits *shared);
/* Gives every chunk back; the holders are forgotten (their bytes stay). */
void membudget_fini(struct membudget *mb);
void membudget_set_limit(struct membudget *mb, uint64_t limit);
/* h holds bytes now: 0, or -1 when that passes the budget (the bytes are
 * counted all the same): then shed every membudget_victim(). */
int membudget_set(struct membudget *mb, struct membudget_holder *h,
    uint64_t bytes);
/* While shedding and above the low-water mark: the heaviest holder, which
 * the caller must bring to (almost) nothing; else NULL. */
struct membudget_holder *membudget_victim(struct membudget *mb);
/* h stays counted but is never picked again (it is already shed). */
void membudget_pin(struct membudget *mb, struct membudget_holder *h);
/* Has another worker asked this one to shed?  -1: shed every victim. */
int membudget_poll(struct membudget *mb);
const struct membudget_holder *membudget_heaviest(const struct membudget *mb);
/* max_buffer_memory = auto: a quarter of physical memory, clamped to
 * MEMBUDGET_AUTO_MIN..MEMBUDGET_AUTO_MAX. */
uint64_t membudget_auto(void);

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
	 * with (*why_r and *by_r borrowed until vet_end).  May be NULL.
	 * (The plugins' vetting of a handshake: upgrade.c, set by server.c.) */
	int (*vet)(struct wsp_conn *c, const struct http_request *req,
	    const char *head, size_t head_len, const char *proto,
	    const char **why_r, const char **by_r);
	/* After conn_upgrade_resume: the answer (0 or the status to refuse
	 * with, *why_r and *by_r borrowed until vet_end) and the length
	 * of the request head, which was given to vet. */
	int (*vet_result)(struct wsp_conn *c, size_t *head_len_r,
	    const char **why_r, const char **by_r);
	/* The handshake is over, whatever its end, for a connection whose
	 * c->vetting is set: drop it (and tell a plugin still deciding). */
	void (*vet_end)(struct wsp_conn *c);
};

/* Why a doomed connection is ended. */
enum conn_doom {
	CONN_DOOM_SLOW,    /* past max_output_buffer: 1008 */
	CONN_DOOM_OUTPUT,  /* shed for max_buffer_memory, its output: 1008 */
	CONN_DOOM_PARTIAL, /* shed, its partial message: 1009 */
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
	unsigned ip_counted : 1;   /* in the registry's table of addresses */
	unsigned held_conn : 1;    /* a place in srv->nheld or srv->limits */
	unsigned held_ip : 1;      /* a place in srv->limits' ip table */
	unsigned registered : 1;
	unsigned doomed : 1;       /* shed: end it in its handler, for why */
	unsigned mem_tracked : 1;  /* counted against max_buffer_memory */
	unsigned out_lost : 1;     /* where out's first frame ends is unknown */
	unsigned shut_wr : 1;      /* lingering: our FIN is sent */
	unsigned tls_peeked : 1;   /* the first byte was a TLS record */
	unsigned tls_open : 1;     /* the TLS handshake is done */
	unsigned tls_wants_write : 1; /* a TLS read waits for writability */
	unsigned upgrade_wait : 1; /* a plugin decides: not reading */
	unsigned upgrade_ready : 1; /* it decided: act in the handler */
	uint8_t msg_opcode;
	uint8_t doom;              /* enum conn_doom, while doomed */
	uint16_t close_code;       /* for the close log line */
	struct event ev; /* embedded: one allocation less per connection */
	struct evbuffer *out; /* made when something is first queued */
	size_t out_head; /* bytes of out's first frame not yet written, when
	                    known (!out_lost); else 0 */
	size_t out_head_size; /* that frame's whole size */
	struct membudget_holder mem; /* out and msg, as counted */
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
	 * which also keeps the answer (conn_hooks.vet_result), so an
	 * established connection pays one pointer for it. */
	struct upgrade *vetting;
};

/* The server's reply stage (conn.c), one per process. */
#define CONN_STAGE_SIZE (64 * 1024)

int conn_accept(struct wsp_server *srv, int fd, const struct sockaddr *sa,
    socklen_t salen, int tls);
int conn_send(struct wsp_conn *c, uint8_t opcode, const void *data, size_t len);
/* c's output buffer, made on first use (NULL: out of memory); c->out is
 * NULL until something is queued. */
struct evbuffer *conn_out(struct wsp_conn *c);
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
void conn_expire_closing(struct wsp_conn *c);
void conn_expire_linger(struct wsp_conn *c);
void conn_reap(struct wsp_conn *c, uint64_t idle_ms);
void conn_info(const struct wsp_conn *c, struct wsp_conn_info *info);
/* Hand-over: an open connection on fd, not yet served (no event), for
 * the caller to fill in and register (or, path NULL, to make a handshake
 * in progress); NULL when out of memory. */
struct wsp_conn *conn_adopt(struct wsp_server *srv, int fd, const char *path,
    size_t path_len);
int conn_adopt_start(struct wsp_conn *c);
/* Forget c without a word to the peer or the plugins: another process
 * owns it now (or never took it). */
void conn_release(struct wsp_conn *c);
void conn_path_unref(struct conn_path *p);
/* Shed the victims membudget.c names, down to its goal. */
void conn_mem_shed(struct wsp_server *srv);
/* workers > 1: shed what another worker asked this one to (heartbeat). */
void conn_mem_poll(struct wsp_server *srv);
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

/* slots.c: retry slots, spread at the measured accept rate, for the
 * clients a restart, a shed or a refusal sends away */

#define SLOTS_MIN_RATE 100       /* opens a second assumed at the least */
#define SLOTS_MAX_STRETCH 10     /* a window is at most this x the spread */
#define SLOTS_MIN_CAP_MS 60000   /* ... or this, whichever is longer */
#define SLOTS_REFUSAL_MS 1000    /* a refused or shed client waits this */
#define SLOTS_MAX_RETRY_AFTER_S 3600

struct retry_slots {
	/* the schedule */
	uint64_t next_us; /* monotonic time of the next free slot */
	uint64_t step_us; /* between two slots */
	int planned;
	/* the accept-rate meter */
	uint64_t sec;     /* the second counted (monotonic) */
	uint32_t count;   /* connections opened in it */
	uint32_t peak;    /* the most opened in any one second */
};

/* A connection was opened at now_ms. */
void slots_opened(struct retry_slots *s, uint64_t now_ms);
/* Opens a second the daemon has shown it can take (>= SLOTS_MIN_RATE). */
uint32_t slots_rate(const struct retry_slots *s);
/* How long n clients take to come back at rate a second, never shorter
 * than spread_ms, never longer than SLOTS_MAX_STRETCH x spread_ms (or
 * SLOTS_MIN_CAP_MS). */
uint64_t slots_window(uint64_t n, uint32_t rate, uint64_t spread_ms);
/* n slots evenly over [start_ms, start_ms + window_ms). */
void slots_plan(struct retry_slots *s, uint64_t start_ms, uint64_t window_ms,
    uint64_t n);
/* Take the next slot: milliseconds from now_ms to it (rounded up).  Past
 * the planned n, slots go on at the same spacing. */
uint64_t slots_take(struct retry_slots *s, uint64_t now_ms);
/* The same for a client refused or shed: at least min_ms away; when no
 * schedule lies ahead, one starts there, spaced at the accept rate. */
uint64_t slots_take_later(struct retry_slots *s, uint64_t now_ms,
    uint64_t min_ms);
/* The close reason carrying a slot, {"retry_after_ms":N}: its length,
 * or -1 when size is too small. */
int slots_reason(char *buf, size_t size, uint64_t retry_ms);
/* A Retry-After header's whole seconds for retry_ms: rounded up, 1 at
 * least, SLOTS_MAX_RETRY_AFTER_S at most. */
unsigned slots_retry_after_s(uint64_t retry_ms);

/* admit.c: the handshake policy; each answers 0 or the status to refuse
 * with, a metrics label (reason) and the response text (why) */

/* At accept, for c (its ip set): draining, then max_connections and
 * max_connections_per_ip, counting every socket from accept to close(2).
 * Admitted, the places taken are marked on c (held_conn, held_ip,
 * ip_counted); refused, c holds none. */
int admit_accept(struct wsp_server *srv, struct wsp_conn *c,
    const char **reason_r, const char **why_r);
/* Origin, and the subprotocol (NULL: none) chosen. */
int admit_request(struct wsp_server *srv, const struct http_request *req,
    const char **protocol_r, const char **reason_r, const char **why_r);
/* Give back every place c holds; once, from conn_free. */
/* Take the places of a connection adopted in a hand-over, unjudged;
 * -1 when out of memory. */
int admit_adopt(struct wsp_server *srv, struct wsp_conn *c);
void admit_release(struct wsp_conn *c);
/* Is path one of [server] gone's (410)? */
int admit_gone(const struct wsp_config *cfg, const struct http_str *path);
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
/* Bytes of the daemon's memory budget, all workers together: 0, or -1
 * when taking n would pass max (nothing is taken then). */
int limits_mem_take(struct limits *l, uint64_t n, uint64_t max);
void limits_mem_put(struct limits *l, uint64_t n);
uint64_t limits_mem_count(const struct limits *l);
/* This worker's heaviest holder holds bytes (for limits_mem_ask). */
void limits_mem_top(struct limits *l, uint64_t bytes);
/* Ask the worker whose heaviest holder holds the most, if more than
 * bytes, to shed want bytes: 1 when one was asked, 0 when none is
 * heavier. */
int limits_mem_ask(struct limits *l, uint64_t bytes, uint64_t want);
/* What other workers asked this one to shed (then forgotten), or 0. */
uint64_t limits_mem_wanted(struct limits *l);

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
/* Answer status (0: nothing, as on a TLS listener) with why, send our FIN,
 * read what the client already sent, and close fd: a refusal that keeps
 * no descriptor.  retry_after_s: a 503's Retry-After (0: the default). */
void fdlimit_refuse(int fd, int status, unsigned retry_after_s,
    const char *why);

/* listen.c: accepting sockets, handed to srv->on_accept */

struct listener {
	TAILQ_ENTRY(listener) entry;
	struct event *ev; /* readable: one accept4() (listen.c) */
	int fd;
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

/* outbuf.c: a growing byte buffer; little-endian records in and out */

struct outbuf {
	char *p;
	size_t len, cap;
};

/* Room for n more bytes: 0, or -1 with b unchanged. */
int outbuf_grow(struct outbuf *b, size_t n);
int outbuf_put(struct outbuf *b, const void *p, size_t n);
/* v's low width (1..8) bytes, least significant first. */
int outbuf_put_le(struct outbuf *b, uint64_t v, size_t width);
void outbuf_set_le(void *at, uint64_t v, size_t width);

/* A reading cursor: after its first failure every read gives 0 or NULL,
 * and why keeps the first reason. */
struct le_rd {
	const uint8_t *p;
	size_t n;
	const char *why;
};

int le_fail(struct le_rd *r, const char *why); /* always -1 */
uint64_t le_get(struct le_rd *r, size_t width);
const uint8_t *le_take(struct le_rd *r, size_t n);

/* json_write.c: compact JSON text, as json_dumps(JSON_COMPACT) writes it */

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
	PLUGIN_CB_BUS, PLUGIN_CB_UPGRADE, PLUGIN_CB_UPGRADE_CANCEL,
	PLUGIN_CB_RELOAD,
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
	struct plugin_type *last; /* the last type routed (plugin.c) */
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
struct wsp_plugin_ctx *plugin_set_lookup_n(struct plugin_set *set,
    const char *type, size_t n, const char **name_r);
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

/* conn_hooks.vet, .vet_result and .vet_end (server.c sets them). */
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

/* bus_frame.c: the frames between a worker and its master's bus store */

#define BUS_FRAME_PREFIX 4   /* the u32 length */
#define BUS_FRAME_FIXED 22   /* type, flags, id, n1, n2 */
#define BUS_CONN_ID_MAX 32
#define BUS_FRAME_HEAD_MAX (BUS_FRAME_PREFIX + BUS_FRAME_FIXED + 3 +       \
	WSP_BUS_CHANNEL_MAX + BUS_CONN_ID_MAX + WSP_BUS_EPOCH_MAX)
#define BUS_FRAME_MAX (1024U * 1024 * 1024 + 4096) /* a 1 GiB message */

enum bus_frame_type {
	/* worker to master */
	BF_PUB = 1, /* flags: WSP_BUS_*; conn: the publisher; data */
	BF_SUB,     /* id; conn; flags BFF_SINCE with n1, epoch */
	BF_UNSUB,   /* conn */
	BF_PRES,    /* id; n1: at most so many ids */
	/* master to worker */
	BF_PUBACK,  /* id; n1 offset, n2 subscribers, epoch; flags BFF_ERR */
	BF_SUBACK,  /* id; n1 offset, n2 subscribers, epoch, BFF_RECOVERED */
	BF_MSG,     /* n1 offset (0: transient), epoch, conn: not to it */
	BF_REPLAY,  /* id; n1 offset, data: one message of history */
	BF_PRESACK, /* id; n1 total; data: the ids, each followed by '\n' */
	BF_MAX
};
#define BFF_SINCE 0x1
#define BFF_RECOVERED 0x2
#define BFF_ERR 0x4

struct bus_frame {
	uint8_t type, flags;
	uint32_t id;
	uint64_t n1, n2;
	char channel[WSP_BUS_CHANNEL_MAX + 1];
	char conn[BUS_CONN_ID_MAX + 1];
	char epoch[WSP_BUS_EPOCH_MAX + 1];
	const char *data; /* borrowed */
	size_t len;
};

/* Bytes of the frame before its payload, the prefix included. */
size_t bus_frame_head_size(const struct bus_frame *f);
/* Write that head (the payload, f->len bytes, follows it); its size. */
size_t bus_frame_encode_head(const struct bus_frame *f,
    uint8_t out[BUS_FRAME_HEAD_MAX]);
/* The length a prefix announces: 0, or -1 when no frame is that long. */
int bus_frame_length(const uint8_t prefix[BUS_FRAME_PREFIX], uint32_t *len_r);
/* Parse the len bytes after the prefix: 0, or -1 with *why_r. */
int bus_frame_decode(const uint8_t *buf, size_t len, struct bus_frame *f,
    const char **why_r);

/* bus_local.c: the local backend's store, and the backend itself in one
 * process, in a worker (a client of the master) and in the master */

struct bus_limits {
	uint64_t history_size;   /* messages per channel */
	uint64_t history_ttl;    /* ms */
	uint64_t history_memory; /* bytes, every channel */
};

struct bus_store;

struct bus_store_result {
	uint64_t offset;      /* publish: the message's; subscribe: the top */
	const char *epoch;    /* the channel's, valid until the next call */
	uint64_t subscribers; /* on the channel, every worker */
	int recovered;        /* subscribe with since */
	const uint32_t *per_worker; /* members in each worker (publish) */
};

struct bus_store *bus_store_new(const struct bus_limits *lim,
    size_t nworkers);
void bus_store_free(struct bus_store *st);
void bus_store_configure(struct bus_store *st, const struct bus_limits *lim);
/* 0, or -1 when out of memory.  now: monotonic ms. */
int bus_store_publish(struct bus_store *st, const char *channel,
    const char *data, size_t n, int transient, uint64_t now,
    struct bus_store_result *r);
/* Add conn (in worker) to channel; with since, whether every message
 * after it is still in history (then bus_store_replay sends them). */
int bus_store_subscribe(struct bus_store *st, const char *channel,
    size_t worker, const char *conn, const struct wsp_bus_since *since,
    struct bus_store_result *r);
void bus_store_replay(struct bus_store *st, const char *channel,
    uint64_t after, void (*fn)(void *arg, uint64_t offset, const char *data,
    size_t n), void *arg);
void bus_store_unsubscribe(struct bus_store *st, const char *channel,
    size_t worker, const char *conn);
/* Every member worker had: it died. */
void bus_store_worker_gone(struct bus_store *st, size_t worker);
/* Up to max ids into ids_r (borrowed until the next call); the total. */
size_t bus_store_presence(struct bus_store *st, const char *channel,
    size_t max, const char **ids_r, uint64_t *total_r);
/* Drop what is past history_ttl. */
void bus_store_expire(struct bus_store *st, uint64_t now);
void bus_store_stats(const struct bus_store *st, uint64_t *channels_r,
    uint64_t *bytes_r);
/* The store as bytes (versioned, CRC-checked, at most BUS_HISTORY_MAX),
 * appended to b: 0, or -1 (b as it was). */
#define BUS_HISTORY_MAX (256u * 1024 * 1024)
int bus_store_save(struct bus_store *st, uint64_t now, struct outbuf *b);
/* Those bytes into a store with nothing yet, cut to its limits: 0, or -1
 * with *why_r and the store left empty. */
int bus_store_load(struct bus_store *st, const uint8_t *p, size_t n,
    uint64_t now, const char **why_r);
/* Forget the channels with neither history nor members. */
void bus_store_sweep(struct bus_store *st);
/* "0123456789abcdef": 64 random bits for a new channel's epoch. */
void bus_epoch_new(char out[17]);

/* The seam between the bus (bus.c) and a backend: see bus.c. */
struct bus_sink {
	/* A message for this process's subscribers of channel: offset 0 is
	 * a transient one; except, when not "", the id of a connection not
	 * to deliver it to.  data is borrowed. */
	void (*deliver)(void *arg, const char *channel, uint64_t offset,
	    const char *epoch, const char *except, const char *data,
	    size_t n);
	/* This process's members of channel may have missed messages (the
	 * backend lost its peers, or the channel's epoch changed): tell
	 * them, and take any offset from here on. */
	void (*gap)(void *arg, const char *channel);
	void *arg;
};

struct bus_answer {
	int error;       /* 0 or -1 */
	int recovered;
	uint64_t offset;
	const char *epoch;
	uint64_t subscribers; /* publish, subscribe; presence: the total */
	const char *const *ids; /* presence */
	size_t nids;
};

typedef void bus_done_fn(void *arg, const struct bus_answer *a);
typedef void bus_replay_fn(void *arg, uint64_t offset, const char *data,
    size_t n);

struct bus_backend {
	const char *name;
	void *be;
	/* Limits from [bus]: at start and on a committed reload. */
	void (*configure)(void *be, const struct bus_limits *lim);
	/* Deliver data on channel (through the sink, also to this process)
	 * and answer done (which may be NULL) with its offset. */
	void (*publish)(void *be, const char *channel, const char *conn,
	    unsigned flags, const char *data, size_t n, bus_done_fn *done,
	    void *arg);
	/* conn joins channel (presence); first: this process had no member
	 * of it before.  With since, replay gets every message after it
	 * (only if recovered) before done answers. */
	void (*subscribe)(void *be, const char *channel, const char *conn,
	    int first, const struct wsp_bus_since *since,
	    bus_replay_fn *replay, bus_done_fn *done, void *arg);
	/* conn leaves channel; last: this process has no member of it now. */
	void (*unsubscribe)(void *be, const char *channel, const char *conn,
	    int last);
	void (*presence)(void *be, const char *channel, size_t max,
	    bus_done_fn *done, void *arg);
	/* Channels and history bytes, for /metrics (0, 0: counted
	 * elsewhere, by the master). */
	void (*stats)(void *be, uint64_t *channels_r, uint64_t *bytes_r);
	/* The history as bus_store_save's bytes, appended to b; load reads
	 * them into a store with nothing yet (keep_empty: channels without
	 * history wait for their members, until sweep).  NULL: this backend
	 * keeps no history in this process (a worker's, Redis). */
	int (*save)(void *be, struct outbuf *b);
	int (*load)(void *be, const uint8_t *p, size_t n, int keep_empty,
	    const char **why_r);
	void (*sweep)(void *be);
	/* A hand-over (workers.c, handover.c), the loop standing still:
	 * flush (1) writes every frame still queued for the store (Redis:
	 * and waits for every answer owed, since its connections do not
	 * move); 2 also waits until every request has its answer; 0: every
	 * frame come in so far is read and acted on (deliveries, answers).
	 * *fd_r: the socket, for poll, or -1 (none to watch).  0, or -1
	 * (the store is gone).  NULL: nothing queued anywhere but in this
	 * process. */
	int (*pump)(void *be, int flush, int *fd_r);
	/* Answers still owed are given with error set. */
	void (*free)(void *be);
};

/* One process: the store in it; answers before the call returns. */
int bus_local_open(struct bus_backend *b, struct event_base *base,
    const struct bus_limits *lim, const struct bus_sink *sink);
/* A worker: the store is its master's, across fd (taken over). */
int bus_local_connect(struct bus_backend *b, struct event_base *base, int fd,
    const struct bus_sink *sink);

/* The master's side: one store, each worker's socket. */
struct bus_hub;
struct bus_hub *bus_hub_new(struct event_base *base,
    const struct bus_limits *lim, size_t nworkers);
/* Worker i (0-based) speaks on fd (taken over). */
int bus_hub_attach(struct bus_hub *h, size_t i, int fd);
/* Worker i is gone: its socket closes, its members leave. */
void bus_hub_detach(struct bus_hub *h, size_t i);
/* Worker i's socket holds queued bytes, past budget (BUS_HUB_BACKLOG and
 * history_memory): it is sent nothing more until it is attached again. */
#define BUS_HUB_BACKLOG (64U * 1024 * 1024)
typedef void bus_overflow_fn(void *arg, size_t i, size_t queued,
    uint64_t budget);
void bus_hub_on_overflow(struct bus_hub *h, bus_overflow_fn *fn, void *arg);
void bus_hub_configure(struct bus_hub *h, const struct bus_limits *lim);
/* The store's history for a new master (bus_store_save's bytes), and
 * loaded there before any worker is attached; 0 or -1. */
int bus_hub_save(struct bus_hub *h, struct outbuf *b);
int bus_hub_load(struct bus_hub *h, const uint8_t *p, size_t n,
    const char **why_r);
void bus_hub_sweep(struct bus_hub *h);
/* 1 when nothing waits in either direction on any worker's socket. */
int bus_hub_idle(struct bus_hub *h);
void bus_hub_stats(struct bus_hub *h, uint64_t *channels_r,
    uint64_t *bytes_r);
void bus_hub_free(struct bus_hub *h);

/* bus_redis.c: the Redis backend, for several daemons on one Redis */
struct metrics;
int bus_redis_open(struct bus_backend *b, struct event_base *base,
    const struct wsp_config *cfg, const struct bus_limits *lim,
    const struct bus_sink *sink, struct metrics *m);
/* [bus] redis, redis_* changed on a reload: connect again with them. */
void bus_redis_reconfigure(void *be, const struct wsp_config *cfg);
/* "host:port", "[v6]:port" or "/unix/path": 0, and (if host is not
 * NULL) the host or path in host and the port (0 for a path) in
 * *port_r; -1 if malformed. */
int redis_addr_parse(const char *text, char *host, size_t hostsz,
    int *port_r);
/* A message as the publish script puts it on a channel's pub/sub name:
 * "W1 OFFSET EPOCH ORIGIN FLAG EXCEPT\n" and the data; FLAG is q
 * (queued: ORIGIN delivered it itself already) or -, EXCEPT a connection
 * id of ORIGIN's or -. */
struct bus_redis_msg {
	uint64_t offset;
	char epoch[WSP_BUS_EPOCH_MAX + 1];
	char origin[17];
	int queued;
	char except[BUS_CONN_ID_MAX + 1]; /* "" for none */
	const char *data;                 /* in the parsed buffer */
	size_t len;
};
int bus_redis_msg_parse(const char *p, size_t n, struct bus_redis_msg *m);

/* bus.c: channels for plugins; subscriptions of this process's
 * connections, delivery to them, the backend behind */

struct bus;

/* fd != -1: a worker's socket to the master's store (taken over). */
struct bus *bus_new(struct wsp_server *srv, int fd);
void bus_free(struct bus *bus);
/* A committed reload: [bus]'s new limits. */
void bus_configure(struct bus *bus, const struct wsp_config *cfg);
void bus_limits_of(const struct wsp_config *cfg, struct bus_limits *lim);
/* c closed: it leaves every channel, its answers are dropped. */
void bus_conn_closed(struct bus *bus, struct wsp_conn *c);
/* ctx is unloaded: its answers are dropped. */
void bus_forget_plugin(struct bus *bus, struct wsp_plugin_ctx *ctx);
int bus_subscribe(struct bus *bus, struct wsp_plugin_ctx *ctx,
    struct wsp_conn *c, const char *channel, const struct wsp_bus_since *since,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_subscribed *),
    void *arg);
/* A connection handed over (handover_child.c) joins channel again,
 * answering no plugin: from last of epoch (its position, bus_positions)
 * when it had one, recovering what it missed, else live; 0 or -1.  One
 * that cannot recover what it missed is sent a gap message. */
int bus_adopt(struct bus *bus, struct wsp_conn *c, const char *channel,
    uint64_t last, const char *epoch);
int bus_unsubscribe(struct bus *bus, struct wsp_conn *c, const char *channel);
int bus_publish(struct bus *bus, struct wsp_plugin_ctx *ctx,
    struct wsp_conn *c, const char *channel, const char *text, size_t len,
    unsigned flags,
    void (*done)(void *, struct wsp_conn *, const struct wsp_bus_published *),
    void *arg);
size_t bus_channels(struct bus *bus, const struct wsp_conn *c,
    void (*fn)(const char *, void *), void *arg);
/* As bus_channels, with each channel's position for c: the last offset
 * handed to it and their epoch ("" and 0: none yet). */
size_t bus_positions(struct bus *bus, const struct wsp_conn *c,
    void (*fn)(const char *, uint64_t, const char *, void *), void *arg);
int bus_presence(struct bus *bus, struct wsp_plugin_ctx *ctx,
    struct wsp_conn *c, const char *channel, size_t max,
    void (*done)(void *, struct wsp_conn *, const char *const *, size_t,
    uint64_t), void *arg);
/* The backend's history for a successor (appended to b): 1, 0 when the
 * backend keeps none here, -1 on failure. */
int bus_history_save(struct bus *bus, struct outbuf *b);
/* Read back before any member joins: 0, or -1 with *why_r (nothing
 * kept).  keep_empty: see struct bus_backend; bus_history_settled ends it. */
int bus_history_load(struct bus *bus, const uint8_t *p, size_t n,
    int keep_empty, const char **why_r);
void bus_history_settled(struct bus *bus);
/* The backend's pump (struct bus_backend); 0 with *fd_r -1 when it has
 * none. */
int bus_pump(struct bus *bus, int flush, int *fd_r);
/* A channel name a plugin may use: 1..WSP_BUS_CHANNEL_MAX bytes of
 * UTF-8 without control characters. */
int bus_channel_valid(const char *name);

/* host.c: the function table plugins call (claim excepted: plugin.c) */

extern const struct wsp_host wsp_host_table;
int host_send_json(struct wsp_conn *c, const json_t *msg);

/* metrics.c: counters for the operator */

#define METRICS_CODES 32
#define METRICS_REASONS 15
#define METRICS_TLS_FAILS 5

struct metrics {
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
	uint64_t pings, reaps;
	uint64_t reloads_ok, reloads_failed;
	uint64_t handovers_ok, handovers_failed; /* carried across them */
	uint64_t refused[METRICS_REASONS]; /* by metrics_refuse_reasons[] */
	uint64_t tls_handshakes;
	uint64_t shed[2]; /* max_buffer_memory: output, partial */
	uint64_t bus_published, bus_delivered; /* counters */
	uint64_t bus_channels, bus_history_bytes; /* gauges of the store */
	/* [bus] backend = redis (bus_redis.c) */
	uint64_t redis_state; /* gauge: 1 connected, 0 not */
	uint64_t redis_reconnects, redis_published, redis_delivered;
	uint64_t redis_dropped, redis_replayed; /* counters */
	uint64_t redis_rtt_us; /* gauge: the last PING's round trip */
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
/* A connection shed for max_buffer_memory: its output or its partial. */
void metrics_shed(struct wsp_server *srv, int partial);
/* Count a reload that succeeded (ok) or failed; that kind's total. */
uint64_t metrics_reloaded(struct wsp_server *srv, int ok);
/* What /metrics counts, as one process sees it; with workers > 1 the sum
 * of every worker's (the gauges only of those alive). */
struct metrics_snap {
	struct metrics m;
	uint64_t active, pending, opened;
	uint64_t lingering; /* refused or closed, not yet close(2)d */
	uint64_t workers, workers_alive; /* 0, 0 with one process */
	uint64_t workers_backlogged; /* replaced for their bus backlog */
	uint64_t mem_bytes, mem_limit;   /* max_buffer_memory: used, limit */
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
/* A hand-over's view: the i-th listener's descriptor (borrowed) and its
 * configured address, or -1 past the last. */
int admin_socket(struct wsp_server *srv, size_t i,
    struct sockaddr_storage *conf, socklen_t *len);
void admin_free(struct wsp_server *srv);
/* ctl_msg.c: the messages on a worker's control socket */

#define CTL_G_LEN 9    /* G u32 id, u32 limit */
#define CTL_L_LEN 13   /* L u32 from, u32 id, u32 limit */
#define CTL_X_LEN 9    /* X u32 worker, u32 id */
#define CTL_R_LEN 21   /* R u32 who, u32 id, u64 active, u32 len */
#define CTL_R_MAX (ADMIN_LINES_MAX + 64 * 1024) /* a line past the mark */
#define CTL_TO_MASTER "pfGR"
#define CTL_TO_WORKER "PCALXR"

void ctl_put32(uint8_t *p, uint32_t v);
uint32_t ctl_get32(const uint8_t *p);
void ctl_put_r(uint8_t h[CTL_R_LEN], uint32_t who, uint32_t id,
    uint64_t active, uint32_t len);
/* The length of the whole message at p, 0 while fewer than that are
 * there, -1 for a letter not in kinds or a length past CTL_R_MAX. */
ssize_t ctl_msg_len(const uint8_t *p, size_t have, const char *kinds);

/* workers > 1: one worker's part of /connections.  lines holds a line
 * per connection, oldest first: its connected_at_ms, a space, its JSON
 * object, '\n'. */
struct conns_part {
	int worker;        /* 1..workers */
	int answered;      /* 0: not running, or no answer in time */
	uint64_t active;   /* its connections, listed or not */
	const char *lines; /* borrowed for the callback */
	size_t len;
};
typedef void conns_done_fn(void *arg, const struct conns_part *parts,
    size_t n);
/* This process's lines (as struct conns_part's), at most limit of them and
 * ADMIN_LINES_MAX bytes; how many were written. */
#define ADMIN_LINES_MAX (8U * 1024 * 1024)
size_t admin_conns_lines(struct wsp_server *srv, uint64_t limit,
    struct evbuffer *out);

/* notify.c: sd_notify(3) to systemd; every call is a no-op without
 * libsystemd or when NOTIFY_SOCKET is unset */

struct notify;

int notify_start(struct wsp_server *srv); /* READY=1, status, watchdog */
void notify_reloading(struct wsp_server *srv);
void notify_ready(struct wsp_server *srv);
void notify_stopping(struct wsp_server *srv);
void notify_mainpid(struct wsp_server *srv, long pid); /* MAINPID= */
void notify_free(struct wsp_server *srv);

/* histstore.c: the bus's history in systemd's fd store */
struct histstore;
/* Before any plugin: the history systemd hands back, if any. */
void histstore_restore(struct wsp_server *srv);
/* Before the loop: a memfd of our own in the store, rewritten at most
 * once a second; 0, or -1 out of memory. */
int histstore_start(struct wsp_server *srv);
/* Its last write (a clean exit), before the bus goes. */
void histstore_free(struct wsp_server *srv);

/* handover_state.c: a connection's state as bytes for the process that
 * takes over: framed, versioned, CRC-checked, bounded; pure and fuzzed */

#define HO_MAGIC 0x4f485357u /* "WSHO" as little-endian bytes */
#ifndef HO_VERSION /* a test build speaks another to test the fallback */
#define HO_VERSION 3 /* of the records, counters and history (2: history,
			 * 3: bus positions) */
#endif
#define HO_HDR_LEN 16
#define HO_MAX_FRAME (256 * 1024 * 1024)
/* Bus channels one connection takes along, at most: one with more stays
 * with the old process. */
#define HO_MAX_SUBS 4096

enum ho_type {
	HO_T_LISTEN = 1, /* old -> new: the listeners (their fds attached) */
	HO_T_READY,      /* new -> old: configured; its version in the header */
	HO_T_FAIL,       /* either way: why, as text */
	HO_T_CONNS,      /* old -> new: a batch of records (fds attached) */
	HO_T_END,        /* old -> new: the server's counters, no more conns */
	HO_T_ADOPTED,    /* new -> old: every connection taken (a count) */
	HO_T_GO,         /* old -> new: serve; the old one leaves */
	HO_T_HISTORY,    /* old -> new, before CONNS: the bus's history */
	/* between a master and its workers (workers.c), same binary: */
	HO_T_PEER,       /* master -> worker: its successor's channel (fd) */
	HO_T_TRANSFER,   /* master -> worker: the bus is quiet, transfer */
	HO_T_ABORT,      /* master -> worker: called off */
	HO_T_PAUSE,      /* master -> worker: every successor is READY */
	HO_T_PAUSED,     /* worker -> master: stopped, its bus frames sent */
	HO_T_LAST = HO_T_PAUSED,
};

struct ho_frame {
	uint16_t version, type;
	uint32_t len, crc;
};

/* Borrowed: points into the buffer decoded; p NULL is absent. */
struct ho_bytes {
	const uint8_t *p;
	size_t n;
};

enum { HO_LISTEN_WS = 1, HO_LISTEN_ADMIN = 2 };

struct ho_listen {
	uint8_t kind, tls;
	uint16_t conf_len;
	struct sockaddr_storage conf; /* the configured address it matches */
};

/* HANDSHAKE: a request head part-read (head), not yet upgraded */
enum { HO_STATE_OPEN = 1, HO_STATE_CLOSING = 2, HO_STATE_HANDSHAKE = 3 };

struct ho_conn {
	uint8_t state;
	char id[33];
	char ip[46];
	uint16_t port;
	struct ho_bytes user_agent, origin, path, subprotocol, close_reason;
	uint16_t close_code;
	int64_t connected_at_ms, last_activity_ms;
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
	/* CLOCK_MONOTONIC is the machine's, so these mean the same in the
	 * process that reads them */
	uint64_t last_activity, opened_mono, ping_sent;
	uint32_t pings_missed;
	struct ws_decoder dec; /* ctl NULL: its bytes are in ctl */
	struct ho_bytes ctl;   /* a control frame's body split across reads */
	uint8_t msg_open, msg_opcode;
	struct ho_bytes msg;   /* the message being reassembled */
	struct ho_bytes out;   /* output not yet written */
	struct ho_bytes attrs; /* JSON text of the attributes, or absent */
	/* its bus channels (OPEN), each a length byte and the name, at most
	 * HO_MAX_SUBS of them; absent: none */
	struct ho_bytes subs;
	struct ho_bytes head;  /* HANDSHAKE: the request read so far */
	uint8_t has_zs;        /* permessage-deflate, no context takeover */
	struct deflate_params zp;
	uint8_t z_level, z_mem_level;
	uint64_t z_threshold;
};

size_t ho_frame_header(uint8_t out[HO_HDR_LEN], uint16_t type,
    const void *payload, size_t len);
/* 0 with f filled (the version is the caller's to judge), or -1 with
 * *why_r: not a frame, too long, unknown type. */
int ho_frame_parse(const uint8_t hdr[HO_HDR_LEN], struct ho_frame *f,
    const char **why_r);
int ho_frame_verify(const struct ho_frame *f, const void *payload);
int ho_listen_encode(struct outbuf *b, const struct ho_listen *l);
int ho_listen_decode(const uint8_t *p, size_t n, size_t *used_r,
    struct ho_listen *l, const char **why_r);
/* Append h as a record; -1 (b unchanged) when out of memory or past
 * HO_MAX_FRAME. */
int ho_conn_encode(struct outbuf *b, const struct ho_conn *h);
/* One record from p: 0 with *used_r bytes taken, or -1 with *why_r.
 * h's byte strings point into p. */
int ho_conn_decode(const uint8_t *p, size_t n, size_t *used_r,
    struct ho_conn *h, const char **why_r);
/* Append channel (1..WSP_BUS_CHANNEL_MAX bytes) and the position there
 * (last offset, epoch: 0..WSP_BUS_EPOCH_MAX letters and digits) to a
 * subs list in b; 0 or -1. */
int ho_subs_add(struct outbuf *b, const char *channel, uint64_t last,
    const char *epoch);
/* The next channel of a decoded (so checked) subs list from *off, into
 * name, last and epoch; 1, or 0 at the end. */
int ho_subs_next(const struct ho_bytes *s, size_t *off,
    char name[WSP_BUS_CHANNEL_MAX + 1], uint64_t *last,
    char epoch[WSP_BUS_EPOCH_MAX + 1]);
/* Append n bytes to b (growing it, up to HO_MAX_FRAME); 0 or -1. */
int ho_buf_put(struct outbuf *b, const void *p, size_t n);
int ho_counters_encode(struct outbuf *b, const uint64_t *v, size_t n);
/* Exactly the payload: values past max are skipped, missing ones 0. */
int ho_counters_decode(const uint8_t *p, size_t n, uint64_t *v, size_t max,
    const char **why_r);

/* handover_io.c: the socket pair between the old process and the new */

#define HO_BATCH_FDS 64 /* descriptors one frame carries, at most */

/* The server counters that continue across a hand-over, in this order on
 * the wire (appended to, never reordered). */
enum {
	HOC_OPENED, HOC_CLOSED, HOC_REFUSED, HOC_REAPED, HOC_MSGS_IN,
	HOC_MSGS_OUT, HOC_BYTES_IN, HOC_BYTES_OUT, HOC_PINGS, HOC_REAPS,
	HOC_RELOADS_OK, HOC_RELOADS_FAILED, HOC_HANDOVERS_OK,
	HOC_HANDOVERS_FAILED, HOC_N
};

/* Both directions' timeout, ms (0 counts as 1). */
void ho_set_timeout(int fd, uint64_t ms);
void ho_close_fds(int *fds, size_t n); /* those >= 0 */
/* One frame, nfds (<= HO_BATCH_FDS) descriptors on its first byte; 0, or
 * -1 with errno. */
int ho_send(int fd, uint16_t type, const void *payload, size_t len,
    const int *fds, size_t nfds);
/* One frame: f, its payload checked against the CRC (malloc'd, the
 * caller frees it), the descriptors that came with it (more than maxfds
 * is an error).  -1 with *why_r and nothing left open. */
int ho_recv(int fd, struct ho_frame *f, uint8_t **payload_r, int *fds,
    size_t maxfds, size_t *nfds_r, const char **why_r);
/* ho_recv of a frame without descriptors. */
int ho_recv_plain(int fd, struct ho_frame *f, uint8_t **payload_r,
    const char **why_r);
/* A FAIL frame's reason, "the new process refused: ...", in buf. */
const char *ho_fail_text(const struct ho_frame *f, const uint8_t *payload,
    char *buf, size_t size);
/* Why a send on fd failed: the FAIL frame the other process wrote before
 * it closed the channel (in buf), "timed out", or what. */
const char *ho_why_gone(int fd, const char *what, char *buf, size_t size);
/* handover.failed, from side "old" or "new". */
void ho_log_failed(const char *side, pid_t pid, const char *why);

/* handover.c: SIGUSR2, every connection to a new binary (the old
 * process's side); handover_child.c: the new process's */

#define HANDOVER_ENV "WSPLUGD_HANDOVER_FD" /* set in the new process */

struct handover;
struct handover_child;

/* The old process: start one (SIGUSR2); stop a running one (shutdown);
 * log a refusal (e.g. workers > 1). */
void handover_start(struct wsp_server *srv);
void handover_stop(struct wsp_server *srv);
void handover_refuse(struct wsp_server *srv, const char *why);
/* srv->restart_fallback's default: close 1012 to every connection still
 * here and leave once they are gone (or after shutdown_timeout). */
void handover_restart_fallback(struct wsp_server *srv);
/* Fork and exec path with HANDOVER_ENV set: 0 with our end and its pid,
 * or -1 with errno. */
int handover_exec(const char *path, char *const argv[], int *fd_r,
    pid_t *pid_r);
/* One listener's entry onto a LISTEN frame (its fd onto fds). */
int handover_listen_add(struct outbuf *b, int *fds, size_t *n, uint8_t kind,
    uint8_t tls, const struct sockaddr_storage *conf, socklen_t len, int fd);
/* A worker's hand-over to its successor (workers > 1): its master is told
 * each step (HO_T_READY, HO_T_ADOPTED with the count, HO_T_FAIL with why)
 * and await blocks until it says GO (0) or calls it off (-1). */
struct handover_peer {
	void (*report)(void *arg, uint16_t type, uint32_t count,
	    const char *why);
	int (*await)(void *arg);
	void *arg;
};
void handover_peer_start(struct wsp_server *srv, int fd,
    const struct handover_peer *peer);
void handover_peer_transfer(struct wsp_server *srv);
void handover_peer_abort(struct wsp_server *srv);
/* The new process: receive the listeners before the server is built
 * (NULL with errs filled); handover_child_setup is the server_hooks
 * setup that serves them to listen.c and admin.c; run takes the
 * connections and returns once GO came (0) or the hand-over is off (-1:
 * exit without touching any of them). */
struct handover_child *handover_child_new(int fd, uint64_t timeout_ms,
    struct wsp_errors *errs);
void handover_child_setup(struct wsp_server *srv, void *arg);
/* A new worker's side (workers > 1): no listeners come (its master has
 * them); counts: it carries the hand-over in wsplugd_handovers_total. */
struct handover_child *handover_child_peer(int fd, uint64_t timeout_ms,
    int counts);
/* The new master: the k-th socket passed for a (k from 0), or -1 with
 * errno ENOENT; the most sockets passed for one address (the old
 * daemon's worker count). */
int handover_child_take(struct handover_child *hc,
    const struct wsp_listen_addr *a, int backlog, char *addr, size_t addrlen);
size_t handover_child_group(const struct handover_child *hc);
size_t handover_child_left(const struct handover_child *hc);
int handover_child_fd(const struct handover_child *hc);
void handover_child_done(struct handover_child *hc);
int handover_child_run(struct wsp_server *srv);
void handover_child_free(struct wsp_server *srv);
/* Best effort: tell the old process why this one will not take over. */
void handover_child_refuse(int fd, const struct wsp_errors *errs,
    const char *why);

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
	size_t nheld; /* one process: sockets holding a place (admit.c) */
	struct plugin_set *plugins;
	struct plugin_set *plugins_staged; /* built by a reload's prepare */
	struct deadline_queue dq_handshake, dq_ping, dq_closing, dq_linger;
	struct event *sweep;
	struct event *sweep_staged; /* made by a reload's prepare */
	struct event *accept_retry;
	struct event *sig_term, *sig_int, *sig_hup, *sig_usr1, *sig_quit;
	struct event *sig_usr2;
	struct event *shutdown_timer;
	struct conn_path *path; /* cfg->path, as connections share it; made
	                           on the first upgrade after a change */
	uint8_t *rbuf; /* one read buffer for every connection */
	size_t rbuf_size;
	/* conn.c's stage: the replies one connection's read makes, gathered
	 * flat and written by one write(2) as its handler ends; stage_conn
	 * is that connection, NULL while no read is staging; the first
	 * stage_raw bytes are not a frame but the handshake's 101 */
	uint8_t *stage;
	size_t stage_len, stage_raw;
	struct wsp_conn *stage_conn;
	struct outbuf jbuf; /* where outgoing JSON is serialized, reused */
	struct plugin_calls *calls; /* calls_own, or a worker's shared slot */
	struct plugin_calls calls_own;
	struct zstream_pool *zpool; /* permessage-deflate, made on first use */
	struct membudget mem; /* max_buffer_memory */
	int draining;
	struct drain *drain; /* a graceful restart (drain.c), or NULL */
	struct retry_slots slots; /* when the clients sent away come back */
	uint64_t started_mono;
	int64_t started_wall_ms; /* for process_start_time_seconds */
	struct admin *admin;
	struct notify *notify;
	struct histstore *histstore; /* histstore.c, under systemd */
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
	struct bus *bus;  /* channels; NULL until server_init */
	int bus_fd;       /* a worker's socket to its master's bus, or -1 */
	int admin_off; /* admin.c binds nothing: another process serves it */
	struct limits *limits; /* workers > 1: the daemon's counts */
	/* workers > 1, in the worker serving the admin listener: the whole
	 * daemon's view for /metrics and /healthz */
	void (*metrics_sum)(struct wsp_server *srv, struct metrics_snap *s);
	/* and /connections: every worker's lines; done is called once
	 * (each part answered or not), unless cancelled with its arg first */
	int (*conns_gather)(struct wsp_server *srv, uint64_t limit,
	    conns_done_fn *done, void *arg);
	void (*conns_cancel)(struct wsp_server *srv, void *arg);
	/* hand-over (handover.c): the binary to start and its arguments
	 * (set by main.c), the one running, and in a new process the
	 * sockets and connections it is taking */
	const char *exec_path;
	char *const *exec_argv;
	struct handover *handover;
	struct handover_child *handover_child;
	/* What the connections that cannot move get once the new process
	 * serves: handover_restart_fallback unless wired otherwise. */
	void (*restart_fallback)(struct wsp_server *srv);
	/* A plugin is being unloaded: whatever lower layers still hold for
	 * it (the bus's pending answers) is dropped.  plugin.c calls it;
	 * server.c points it at the bus, which plugin.c may not call. */
	void (*plugin_forget)(struct wsp_server *srv,
	    struct wsp_plugin_ctx *ctx);
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

/* drain.c: a graceful restart and shedding, each client given a retry
 * slot */

/* Close every connection with code (1012, Service Restart) spread over
 * [server] restart_spread, each with {"retry_after_ms":N}; then stop
 * listening, wait up to shutdown_timeout and end the loop.  0, or -1 when
 * the server is already stopping (nothing done). */
int drain_restart(struct wsp_server *srv, int code);
/* After a reload: close what exceeds max_connections with 1013. */
void drain_shed(struct wsp_server *srv);
void drain_free(struct wsp_server *srv);

/* workers.c: a master and N worker processes (workers > 1) */

/* main.c's: serve *cfgp in this process until told to stop. */
typedef int workers_serve_fn(struct wsp_config **cfgp, const char *file,
    int level, const struct server_hooks *hooks);
/* The master: bind, fork cfg->workers workers that each call serve,
 * supervise them, and return the exit status once they are gone. */
/* What SIGUSR2 starts (main.c's), and in a master started by a hand-over
 * the old master's sockets (hc, taken over, or NULL). */
struct workers_exec {
	const char *path;
	char *const *argv;
	struct handover_child *hc;
};
int workers_run(struct wsp_config **cfgp, const char *file, int level,
    const char *plugin_dir, workers_serve_fn *serve,
    const struct workers_exec *ex);

/* reload.c */
void server_reload(struct wsp_server *srv); /* prepare, then commit */
/* Read srv->config_file and prepare every module (into srv->cfg_staged):
 * 0, or -1 with the errors logged and nothing left prepared. */
int server_reload_prepare(struct wsp_server *srv);
void server_reload_commit(struct wsp_server *srv);
void server_reload_abort(struct wsp_server *srv);

#endif /* WSPLUGD_H */
