/*
 * test_tls.c: tls.c's checks of [tls] before any client sees them:
 * tls_ctx_new on real PEM files made by the openssl command in a
 * temporary directory (a CA, an ECDSA P-256 and an RSA leaf, one expired,
 * one expiring in 3 days, a key that matches none), each problem reported
 * as FILE:LINE, and the reload trio swapping or keeping the context.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "wsplugd.h"
#include "suite.h"

static char dir[512];
static struct wsp_errors errs, warns;

static int
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int
make_pki(void)
{
	static const char cnf[] = "[ca]\ndefault_ca = d\n[d]\n"
	    "database = index.txt\nnew_certs_dir = .\nserial = serial\n"
	    "default_md = sha256\npolicy = p\nunique_subject = no\n"
	    "[p]\ncommonName = supplied\n";
	FILE *fp;
	char path[600];

	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/wsplugd-tls-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : P_tmpdir);
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/ca.cnf", dir);
	if ((fp = fopen(path, "w")) == NULL)
		return -1;
	fputs(cnf, fp);
	fclose(fp);
	return sh("(cd %s && umask 077 && : > index.txt && echo 01 > serial && "
	    "E='-algorithm EC -pkeyopt ec_paramgen_curve:P-256' && "
	    "openssl genpkey $E -out ca.key && "
	    "openssl req -x509 -new -key ca.key -out ca.pem -subj /CN=ca "
	    "-days 30 && "
	    "leaf() { openssl genpkey $2 -out $1.key && "
	    "openssl req -new -key $1.key -out $1.csr -subj /CN=localhost && "
	    "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key "
	    "-in $1.csr -out $1.pem -notext $3; } && "
	    "leaf ec \"$E\" '-days 30' && "
	    "leaf rsa '-algorithm RSA -pkeyopt rsa_keygen_bits:2048' "
	    "'-days 30' && "
	    "leaf expired \"$E\" '-startdate 20200101000000Z "
	    "-enddate 20200102000000Z' && "
	    "leaf soon \"$E\" '-days 3' && "
	    "openssl genpkey $E -out other.key && "
	    "printf 'not a key\\n' > junk.key) >/dev/null 2>&1", dir);
}

static char *
at(const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) == -1)
		abort();
	return p;
}

/* A configuration as config.c would leave it: paths and their lines. */
static void
cfg_init(struct wsp_config *cfg, const char *cert, const char *key)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->file = "wsplugd.conf";
	cfg->tls.certificate = at(cert);
	cfg->tls.key = at(key);
	cfg->tls.certificate_line = 7;
	cfg->tls.key_line = 8;
	cfg->tls.min_version = 12;
	cfg->tls.session_tickets = 1;
}

static void
cfg_fini(struct wsp_config *cfg)
{
	free(cfg->tls.certificate);
	free(cfg->tls.key);
	errors_clear(&errs);
	errors_clear(&warns);
}

/* Build the context for cert and key: 0 when it loaded. */
static int
build(const char *cert, const char *key)
{
	struct wsp_config cfg;
	struct ssl_ctx_st *ctx;

	cfg_init(&cfg, cert, key);
	errors_clear(&errs);
	errors_clear(&warns);
	ctx = tls_ctx_new(&cfg, &errs, &warns);
	tls_ctx_free(ctx);
	free(cfg.tls.certificate);
	free(cfg.tls.key);
	return ctx != NULL ? 0 : -1;
}

static int
has(const struct wsp_errors *e, const char *prefix, const char *part)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		if (strncmp(e->msg[i], prefix, strlen(prefix)) == 0 &&
		    strstr(e->msg[i], part) != NULL)
			return 1;
	for (i = 0; i < e->n; i++)
		fprintf(stderr, "\n    got: %s", e->msg[i]);
	return 0;
}

static void
test_good_pairs(void)
{
	CU_ASSERT_EQUAL(build("ec.pem", "ec.key"), 0);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_EQUAL(warns.n, 0);
	CU_ASSERT_EQUAL(build("rsa.pem", "rsa.key"), 0);
	CU_ASSERT_EQUAL(errs.n, 0);
}

static void
test_no_certificate_is_no_context(void)
{
	struct wsp_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	CU_ASSERT_PTR_NULL(tls_ctx_new(&cfg, &errs, &warns));
	CU_ASSERT_EQUAL(errs.n, 0);
}

static void
test_problems_name_file_and_line(void)
{
	CU_ASSERT_EQUAL(build("missing.pem", "ec.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:7: [tls] certificate ",
	    "missing.pem: No such file or directory"));
	CU_ASSERT_EQUAL(build("ec.pem", "other.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:8: [tls] key ",
	    "other.key does not match certificate"));
	CU_ASSERT_EQUAL(build("ec.pem", "rsa.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:8: [tls] key ",
	    "does not match certificate"));
	CU_ASSERT_EQUAL(build("ec.pem", "junk.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:8: [tls] key ",
	    "junk.key: cannot load a PEM private key"));
	CU_ASSERT_EQUAL(build("ec.key", "ec.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:7: [tls] certificate ",
	    "not a PEM certificate chain"));
	CU_ASSERT_EQUAL(build("expired.pem", "expired.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:7: [tls] certificate ",
	    "expired.pem expired on Jan  2 00:00:00 2020 GMT"));
	CU_ASSERT_EQUAL(build(".", "ec.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:7: [tls] certificate ",
	    "not a regular file"));
}

static void
test_expiring_soon_is_a_warning(void)
{
	CU_ASSERT_EQUAL(build("soon.pem", "soon.key"), 0);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_EQUAL(warns.n, 1);
	CU_ASSERT(has(&warns, "wsplugd.conf:7: [tls] certificate ",
	    "(within 7 days)"));
}

static void
test_key_mode(void)
{
	char *k = at("ec.key");

	CU_ASSERT_EQUAL(chmod(k, 0644), 0);
	CU_ASSERT_EQUAL(build("ec.pem", "ec.key"), -1);
	CU_ASSERT(has(&errs, "wsplugd.conf:8: [tls] key ",
	    "readable or writable by group or others (mode 644"));
	CU_ASSERT_EQUAL(chmod(k, 0620), 0);
	CU_ASSERT_EQUAL(build("ec.pem", "ec.key"), -1);
	CU_ASSERT_EQUAL(chmod(k, 0400), 0);
	CU_ASSERT_EQUAL(build("ec.pem", "ec.key"), 0);
	CU_ASSERT_EQUAL(chmod(k, 0600), 0);
	free(k);
}

static void
test_cipher_lists(void)
{
	struct wsp_config cfg;
	struct ssl_ctx_st *ctx;

	cfg_init(&cfg, "ec.pem", "ec.key");
	cfg.tls.ciphers = "NOTHING-USABLE";
	cfg.tls.ciphers_line = 9;
	CU_ASSERT_PTR_NULL(tls_ctx_new(&cfg, &errs, &warns));
	CU_ASSERT(has(&errs, "wsplugd.conf:9: [tls] ciphers: ",
	    "no usable cipher in 'NOTHING-USABLE'"));
	errors_clear(&errs);
	cfg.tls.ciphers = "ECDHE+AESGCM";
	cfg.tls.ciphersuites = "TLS_AES_128_GCM_SHA256";
	cfg.tls.min_version = 13;
	cfg.tls.session_tickets = 0;
	ctx = tls_ctx_new(&cfg, &errs, &warns);
	CU_ASSERT_PTR_NOT_NULL(ctx);
	tls_ctx_free(ctx);
	cfg_fini(&cfg);
}

static void
test_reload_trio(void)
{
	struct wsp_server srv;
	struct wsp_config a, b;
	struct ssl_ctx_st *first;

	memset(&srv, 0, sizeof(srv));
	cfg_init(&a, "ec.pem", "ec.key");
	srv.cfg = &a;
	CU_ASSERT_EQUAL_FATAL(tls_init(&srv, &errs), 0);
	first = srv.tls_ctx;
	CU_ASSERT_PTR_NOT_NULL(first);

	/* a mismatched key: prepare fails, abort leaves the running one */
	cfg_init(&b, "rsa.pem", "other.key");
	CU_ASSERT_EQUAL(tls_reload_prepare(&srv, &b, &errs), -1);
	CU_ASSERT_PTR_NULL(srv.tls_ctx_staged);
	tls_reload_abort(&srv);
	CU_ASSERT_PTR_EQUAL(srv.tls_ctx, first);
	cfg_fini(&b);

	/* a good pair: staged, then running after commit */
	cfg_init(&b, "rsa.pem", "rsa.key");
	CU_ASSERT_EQUAL(tls_reload_prepare(&srv, &b, &errs), 0);
	CU_ASSERT_PTR_NOT_NULL(srv.tls_ctx_staged);
	CU_ASSERT_PTR_EQUAL(srv.tls_ctx, first);
	tls_reload_commit(&srv);
	CU_ASSERT_PTR_NOT_NULL(srv.tls_ctx);
	CU_ASSERT_PTR_NULL(srv.tls_ctx_staged);
	tls_free(&srv);
	CU_ASSERT_PTR_NULL(srv.tls_ctx);
	cfg_fini(&b);
	cfg_fini(&a);
}

int
main(void)
{
	static const struct suite_test tests[] = {
		{ "ECDSA and RSA pairs load", test_good_pairs },
		{ "no certificate: no context, no error",
		    test_no_certificate_is_no_context },
		{ "problems as FILE:LINE", test_problems_name_file_and_line },
		{ "expiring within 7 days warns",
		    test_expiring_soon_is_a_warning },
		{ "key mode 600 or stricter", test_key_mode },
		{ "cipher lists", test_cipher_lists },
		{ "reload prepare, abort, commit", test_reload_trio },
	};
	int rc;

	if (make_pki() != 0) {
		fprintf(stderr, "cannot make test certificates with openssl\n");
		return 99; /* a hard error for automake, not a failure */
	}
	rc = suite_run("tls", tests, nitems(tests));
	sh("rm -rf %s", dir);
	return rc;
}
