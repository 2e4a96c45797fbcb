/*
 * tls.c: TLS on the sockets the core already owns.
 *
 * A listener marked "tls" hands its accepted sockets to conn.c as usual;
 * conn.c gives each one an SSL object on its descriptor (SSL_set_fd, no
 * bufferevent, no extra copy) and calls down here at its I/O seams: the
 * handshake while the connection is in CONN_HANDSHAKE, tls_read instead
 * of read(2), tls_write instead of evbuffer_write, and tls_close_notify
 * before its SHUT_WR.  Nothing here calls up into conn.c: what the caller
 * has to do (wait for writability, refuse, end) comes back as a return
 * value and the connection's tls_* flags.
 *
 * The context (certificate chain, key, ciphers, versions, tickets, OCSP
 * response) is built whole by tls_ctx_new, which is also the check that
 * `wsplugd -t` runs: the files exist, the key is not readable by group or
 * others, the key matches the certificate, the certificate has not
 * expired (and a warning when it expires within 7 days).  SIGHUP builds a
 * new context in tls_reload_prepare; commit swaps it in for the handshakes
 * to come, while every open connection keeps its SSL object, which holds
 * a reference to the context it was made from.
 *
 * With ktls = auto, OpenSSL hands the record layer to the kernel after
 * the handshake where the kernel (the tls module) and the cipher allow;
 * the calls here stay the same, and ws.open says what was agreed.
 *
 * Unclean EOF (no close_notify) is an ordinary EOF here
 * (SSL_OP_IGNORE_UNEXPECTED_EOF), so it ends as 1006 like a plain socket.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "wsplugd.h"

#define TLS_EXPIRY_WARN_DAYS 7
/* The most pulled together for one SSL_write_ex: four full records. */
#define TLS_WRITE_CHUNK (4 * 16384)

/* What a context keeps besides OpenSSL's own state: the OCSP response
 * stapled to every handshake. */
struct tls_extra {
	unsigned char *ocsp;
	size_t ocsp_len;
};

/* OpenSSL's ex_data slot for it: indexes are per process in OpenSSL, so
 * this one is made once and kept; it frees the data with each context,
 * whenever the last connection holding an old context lets it go. */
static int tls_extra_index = -1;

/* OpenSSL's last error as text; the queue is cleared. */
static const char *
tls_err(char *buf, size_t sz)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, sz, "unknown error");
	else
		ERR_error_string_n(e, buf, sz);
	ERR_clear_error();
	return buf;
}

static void
tls_extra_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	struct tls_extra *x = ptr;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (x != NULL) {
		free(x->ocsp);
		free(x);
	}
}

static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, h1,
	    sizeof(h1) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* no ALPN answer, not a failure */
	return SSL_TLSEXT_ERR_OK;
}

static int
tls_ocsp_cb(SSL *ssl, void *arg)
{
	struct tls_extra *x = arg;
	unsigned char *copy;

	if (x == NULL || x->ocsp == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	if ((copy = OPENSSL_malloc(x->ocsp_len)) == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	memcpy(copy, x->ocsp, x->ocsp_len);
	/* OpenSSL owns copy from here, whatever happens */
	SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)x->ocsp_len);
	return SSL_TLSEXT_ERR_OK;
}

/* The certificate's expiry: an error when past, a warning when close. */
static void
tls_check_expiry(const struct wsp_config *cfg, X509 *x509,
    struct wsp_errors *errs, struct wsp_errors *warns)
{
	const struct wsp_tls_config *t = &cfg->tls;
	const ASN1_TIME *na = X509_get0_notAfter(x509);
	char date[64] = "?";
	BIO *b;
	int days = 0, secs = 0, n;

	if ((b = BIO_new(BIO_s_mem())) != NULL) {
		if (ASN1_TIME_print(b, na) == 1 &&
		    (n = BIO_read(b, date, sizeof(date) - 1)) > 0)
			date[n] = '\0';
		BIO_free(b);
	}
	if (!ASN1_TIME_diff(&days, &secs, NULL, na)) {
		errors_add(errs, cfg->file, t->certificate_line, "[tls] "
		    "certificate %s: unreadable expiry date", t->certificate);
		return;
	}
	if (days < 0 || secs < 0 || (days == 0 && secs == 0))
		errors_add(errs, cfg->file, t->certificate_line, "[tls] "
		    "certificate %s expired on %s", t->certificate, date);
	else if (days < TLS_EXPIRY_WARN_DAYS)
		errors_add(warns, cfg->file, t->certificate_line, "[tls] "
		    "certificate %s expires on %s (within %d days)",
		    t->certificate, date, TLS_EXPIRY_WARN_DAYS);
}

/* A readable regular file, and for the key not readable by anyone but
 * its owner (like the plugin files, it is checked before use). */
static int
tls_check_file(const struct wsp_config *cfg, const char *what,
    const char *path, int line, int secret, struct wsp_errors *errs)
{
	struct stat st;

	if (stat(path, &st) == -1 || access(path, R_OK) == -1) {
		errors_add(errs, cfg->file, line, "[tls] %s %s: %s", what,
		    path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		errors_add(errs, cfg->file, line, "[tls] %s %s: not a regular "
		    "file", what, path);
		return -1;
	}
	if (secret && (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH))) {
		errors_add(errs, cfg->file, line, "[tls] %s %s: readable or "
		    "writable by group or others (mode %03o; chmod 600 it)",
		    what, path, (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

static int
tls_load_ocsp(const struct wsp_config *cfg, struct tls_extra *x,
    struct wsp_errors *errs)
{
	const struct wsp_tls_config *t = &cfg->tls;
	OCSP_RESPONSE *resp;
	const unsigned char *p;
	unsigned char *der = NULL;
	FILE *fp;
	long len;

	if (tls_check_file(cfg, "ocsp_staple", t->ocsp_staple,
	    t->ocsp_staple_line, 0, errs) == -1)
		return -1;
	if ((fp = fopen(t->ocsp_staple, "rb")) == NULL ||
	    fseek(fp, 0, SEEK_END) == -1 || (len = ftell(fp)) <= 0 ||
	    len > 64 * 1024 || fseek(fp, 0, SEEK_SET) == -1 ||
	    (der = malloc((size_t)len)) == NULL ||
	    fread(der, 1, (size_t)len, fp) != (size_t)len) {
		errors_add(errs, cfg->file, t->ocsp_staple_line, "[tls] "
		    "ocsp_staple %s: cannot read it (empty, over 64 KiB, or "
		    "an I/O error)", t->ocsp_staple);
		if (fp != NULL)
			fclose(fp);
		free(der);
		return -1;
	}
	fclose(fp);
	p = der;
	if ((resp = d2i_OCSP_RESPONSE(NULL, &p, len)) == NULL) {
		ERR_clear_error();
		errors_add(errs, cfg->file, t->ocsp_staple_line, "[tls] "
		    "ocsp_staple %s: not a DER OCSP response", t->ocsp_staple);
		free(der);
		return -1;
	}
	OCSP_RESPONSE_free(resp);
	x->ocsp = der;
	x->ocsp_len = (size_t)len;
	return 0;
}

struct ssl_ctx_st *
tls_ctx_new(const struct wsp_config *cfg, struct wsp_errors *errs,
    struct wsp_errors *warns)
{
	const struct wsp_tls_config *t = &cfg->tls;
	struct tls_extra *x = NULL;
	SSL_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	FILE *fp;
	X509 *x509;
	char eb[256];
	size_t before = errs->n;

	if (t->certificate == NULL)
		return NULL;
	if (tls_extra_index == -1 && (tls_extra_index =
	    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
	    tls_extra_free)) == -1) {
		errors_add(errs, NULL, 0, "TLS: cannot initialise OpenSSL");
		return NULL;
	}
	tls_check_file(cfg, "certificate", t->certificate,
	    t->certificate_line, 0, errs);
	tls_check_file(cfg, "key", t->key, t->key_line, 1, errs);
	if (errs->n > before)
		return NULL;
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    (x = calloc(1, sizeof(*x))) == NULL) {
		errors_add(errs, NULL, 0, "TLS: %s", tls_err(eb, sizeof(eb)));
		free(x);
		goto fail;
	}
	SSL_CTX_set_ex_data(ctx, tls_extra_index, x);
	SSL_CTX_set_min_proto_version(ctx, t->min_version == 13 ?
	    TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	    (t->session_tickets ? 0 : SSL_OP_NO_TICKET) |
	    (t->ktls ? SSL_OP_ENABLE_KTLS : 0));
	if (!t->session_tickets)
		SSL_CTX_set_num_tickets(ctx, 0);
	/* The write buffer is the evbuffer's first chunk, which may move
	 * between a WANT_WRITE and the retry; a partial write returns so
	 * the rest of the queue is not held back behind one record. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"wsplugd",
	    7);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
	if (t->ciphers != NULL && !SSL_CTX_set_cipher_list(ctx, t->ciphers))
		errors_add(errs, cfg->file, t->ciphers_line, "[tls] ciphers: "
		    "no usable cipher in '%s'", t->ciphers);
	if (t->ciphersuites != NULL &&
	    !SSL_CTX_set_ciphersuites(ctx, t->ciphersuites))
		errors_add(errs, cfg->file, t->ciphersuites_line, "[tls] "
		    "ciphersuites: invalid list '%s'", t->ciphersuites);
	ERR_clear_error();
	if (!SSL_CTX_use_certificate_chain_file(ctx, t->certificate)) {
		errors_add(errs, cfg->file, t->certificate_line, "[tls] "
		    "certificate %s: not a PEM certificate chain (%s)",
		    t->certificate, tls_err(eb, sizeof(eb)));
		goto fail;
	}
	/* Read apart from the context: SSL_CTX_use_PrivateKey_file would
	 * report a mismatch as a key that does not load. */
	if ((fp = fopen(t->key, "r")) != NULL) {
		pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
		fclose(fp);
	}
	if (pkey == NULL) {
		errors_add(errs, cfg->file, t->key_line, "[tls] key %s: "
		    "cannot load a PEM private key (%s)", t->key,
		    tls_err(eb, sizeof(eb)));
		goto fail;
	}
	x509 = SSL_CTX_get0_certificate(ctx);
	if (x509 == NULL || !X509_check_private_key(x509, pkey) ||
	    !SSL_CTX_use_PrivateKey(ctx, pkey)) {
		ERR_clear_error();
		errors_add(errs, cfg->file, t->key_line, "[tls] key %s does "
		    "not match certificate %s", t->key, t->certificate);
		goto fail;
	}
	EVP_PKEY_free(pkey);
	pkey = NULL;
	tls_check_expiry(cfg, x509, errs, warns);
	if (t->ocsp_staple != NULL && tls_load_ocsp(cfg, x, errs) == 0) {
		SSL_CTX_set_tlsext_status_cb(ctx, tls_ocsp_cb);
		SSL_CTX_set_tlsext_status_arg(ctx, x);
	}
	if (errs->n > before)
		goto fail;
	return ctx;
fail:
	EVP_PKEY_free(pkey);
	SSL_CTX_free(ctx); /* frees x through the ex_data */
	return NULL;
}

void
tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}

static void
tls_log_warnings(struct wsp_errors *warns)
{
	size_t i;

	for (i = 0; i < warns->n; i++)
		log_msg(WSP_LOG_WARN, "tls.certificate", "%s", warns->msg[i]);
	errors_clear(warns);
}

int
tls_init(struct wsp_server *srv, struct wsp_errors *errs)
{
	struct wsp_errors warns = { NULL, 0 };
	size_t before = errs->n;

	srv->tls_ctx = tls_ctx_new(srv->cfg, errs, &warns);
	tls_log_warnings(&warns);
	return errs->n > before ? -1 : 0;
}

int
tls_reload_prepare(struct wsp_server *srv, const struct wsp_config *cfg,
    struct wsp_errors *errs)
{
	struct wsp_errors warns = { NULL, 0 };
	size_t before = errs->n;

	srv->tls_ctx_staged = tls_ctx_new(cfg, errs, &warns);
	if (errs->n == before)
		tls_log_warnings(&warns);
	errors_clear(&warns);
	return errs->n > before ? -1 : 0;
}

void
tls_reload_commit(struct wsp_server *srv)
{
	/* Open connections hold references to the old context. */
	SSL_CTX_free(srv->tls_ctx);
	srv->tls_ctx = srv->tls_ctx_staged;
	srv->tls_ctx_staged = NULL;
}

void
tls_reload_abort(struct wsp_server *srv)
{
	SSL_CTX_free(srv->tls_ctx_staged);
	srv->tls_ctx_staged = NULL;
}

void
tls_free(struct wsp_server *srv)
{
	tls_reload_abort(srv);
	SSL_CTX_free(srv->tls_ctx);
	srv->tls_ctx = NULL;
}

/*
 * Per connection.
 */

int
tls_conn_new(struct wsp_conn *c)
{
	if (c->srv->tls_ctx == NULL || (c->ssl = SSL_new(c->srv->tls_ctx)) ==
	    NULL || !SSL_set_fd(c->ssl, c->fd)) {
		ERR_clear_error();
		tls_conn_free(c);
		return -1;
	}
	return 0;
}

void
tls_conn_free(struct wsp_conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
	c->tls_open = 0;
	c->tls_wants_write = 0;
}

static void
tls_log_fail(struct wsp_conn *c, const char *reason, const char *detail)
{
	struct log_line *l;

	metrics_tls_failed(c->srv, reason);
	if ((l = log_begin(WSP_LOG_INFO, "tls.fail")) != NULL) {
		log_str(l, "ip", c->ip);
		log_uint(l, "port", c->port);
		log_str(l, "reason", reason);
		if (detail != NULL)
			log_str(l, "msg", detail);
		log_end(l);
	}
}

int
tls_accept(struct wsp_conn *c)
{
	unsigned char first;
	char eb[256];
	ssize_t n;
	int rc, err;

	c->tls_wants_write = 0;
	if (!c->tls_peeked) {
		/* Every TLS connection opens with a handshake record (0x16);
		 * anything else is most likely plain HTTP, which gets a
		 * readable answer rather than a TLS alert. */
		n = recv(c->fd, &first, 1, MSG_PEEK);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return TLS_AGAIN;
		if (n <= 0) {
			tls_log_fail(c, "eof", NULL);
			return TLS_GONE;
		}
		c->tls_peeked = 1;
		if (first != 0x16) {
			tls_log_fail(c, "plain_on_tls_port", NULL);
			tls_conn_free(c);
			return TLS_PLAIN;
		}
	}
	ERR_clear_error();
	if ((rc = SSL_accept(c->ssl)) == 1) {
		c->tls_open = 1;
		metrics_tls_handshake(c->srv);
		return TLS_DONE;
	}
	switch ((err = SSL_get_error(c->ssl, rc))) {
	case SSL_ERROR_WANT_READ:
		return TLS_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		c->tls_wants_write = 1;
		return TLS_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		tls_log_fail(c, "eof", NULL);
		return TLS_GONE;
	case SSL_ERROR_SYSCALL:
		if (errno == EAGAIN || errno == EINTR)
			return TLS_AGAIN;
		tls_log_fail(c, "eof", errno != 0 ? strerror(errno) : NULL);
		ERR_clear_error();
		return TLS_GONE;
	default:
		tls_log_fail(c, "protocol", tls_err(eb, sizeof(eb)));
		return TLS_GONE;
	}
}

/* SSL_get_error after a failed I/O call as read(2)'s -1 and errno; 0 for
 * the peer's close_notify or its EOF. */
static ssize_t
tls_io_error(struct wsp_conn *c, int err, int reading)
{
	switch (err) {
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			c->tls_wants_write = 1;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (errno == 0)
			errno = EPIPE;
		return -1;
	default:
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

ssize_t
tls_read(struct wsp_conn *c, void *buf, size_t len)
{
	size_t got = 0, n;
	ssize_t rv;

	c->tls_wants_write = 0;
	/* Record after record until the socket is empty or buf is full,
	 * so a burst is one pass through the caller as a read(2) is. */
	while (got < len) {
		ERR_clear_error();
		if (SSL_read_ex(c->ssl, (char *)buf + got, len - got, &n)) {
			got += n;
			continue;
		}
		rv = tls_io_error(c, SSL_get_error(c->ssl, 0), 1);
		if (got > 0)
			break; /* the error comes again on the next read */
		return rv;
	}
	return (ssize_t)got;
}

int
tls_pending(const struct wsp_conn *c)
{
	return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

int
tls_write(struct wsp_conn *c, struct evbuffer *out)
{
	size_t len = evbuffer_get_length(out), n;
	unsigned char *p;

	if (len > TLS_WRITE_CHUNK)
		len = TLS_WRITE_CHUNK;
	/* A no-op when the first chunk holds len bytes, as queued frames
	 * usually are: the frames of one flush become whole records. */
	if ((p = evbuffer_pullup(out, (ssize_t)len)) == NULL)
		return -1;
	ERR_clear_error();
	if (!SSL_write_ex(c->ssl, p, len, &n))
		return (int)tls_io_error(c, SSL_get_error(c->ssl, 0), 0);
	evbuffer_drain(out, n);
	return (int)n;
}

void
tls_close_notify(struct wsp_conn *c)
{
	if (c->ssl == NULL || !c->tls_open)
		return;
	ERR_clear_error();
	SSL_shutdown(c->ssl); /* one try: lingering waits for nothing more */
	ERR_clear_error();
}

const char *
tls_version(const struct wsp_conn *c)
{
	return c->ssl != NULL && c->tls_open ? SSL_get_version(c->ssl) : NULL;
}

/* Which directions the kernel does the record layer for: "send+recv",
 * "send", "recv" or "no"; NULL on a plain connection. */
const char *
tls_ktls(const struct wsp_conn *c)
{
	int snd, rcv;

	if (c->ssl == NULL || !c->tls_open)
		return NULL;
	snd = BIO_get_ktls_send(SSL_get_wbio(c->ssl)) > 0;
	rcv = BIO_get_ktls_recv(SSL_get_rbio(c->ssl)) > 0;
	return snd && rcv ? "send+recv" : snd ? "send" : rcv ? "recv" : "no";
}

const char *
tls_cipher(const struct wsp_conn *c)
{
	return c->ssl != NULL && c->tls_open ? SSL_get_cipher_name(c->ssl) :
	    NULL;
}
