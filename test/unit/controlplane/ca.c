/* The mesh CA: generate and reload, sign CSRs (and refuse bad ones), the
 * node authorisation table, rotation with an injected clock. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "weft/ca.h"
#include "weft/log.h"
#include "weft/manifest.h"

#include "../../tap.h"

static time_t fake_now = 1700000000;

static time_t
test_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL)
		return NULL;
	n = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static mode_t
file_mode(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_mode & 0777 : 0;
}

/* A CSR for key k, PEM, with a subject and a SAN the CA must ignore. */
static char *
make_csr(EVP_PKEY *k, bool corrupt)
{
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *e;
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *pem;
	long len;

	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
	    (const unsigned char *)"evil", -1, -1, 0);
	X509_REQ_set_subject_name(r, n);
	X509_REQ_set_pubkey(r, k);
	e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
	    "URI:spiffe://cluster.local/ns/kube-system/sa/admin");
	sk_X509_EXTENSION_push(exts, e);
	X509_REQ_add_extensions(r, exts);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_sign(r, k, EVP_sha256());
	if (corrupt) {
		/* flip a bit of the signature */
		const ASN1_BIT_STRING *sig;
		const X509_ALGOR *alg;

		X509_REQ_get0_signature(r, &sig, &alg);
		((ASN1_BIT_STRING *)sig)->data[10] ^= 0x01;
	}
	PEM_write_bio_X509_REQ(b, r);
	len = BIO_get_mem_data(b, &data);
	pem = strndup(data, (size_t)len);
	BIO_free(b);
	X509_NAME_free(n);
	X509_REQ_free(r);
	return pem;
}

static X509 *
pem_cert(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	return x;
}

/* Verify leaf (PEM) against a bundle (PEM); returns the X509 verify
 * result (X509_V_OK = 0). */
static int
verify_leaf(const char *leaf_pem, const char *bundle)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	BIO *b = BIO_new_mem_buf(bundle, -1);
	X509 *x, *leaf = pem_cert(leaf_pem);
	int rc;

	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_STORE_add_cert(st, x);
		X509_free(x);
	}
	ERR_clear_error();
	X509_STORE_CTX_init(ctx, st, leaf, NULL);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	/* the fake clock is in the past */
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), fake_now);
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK :
	    X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(leaf);
	BIO_free(b);
	return rc;
}

static size_t
bundle_count(const char *bundle)
{
	size_t n = 0;
	const char *p = bundle;

	while ((p = strstr(p, "BEGIN CERTIFICATE")) != NULL) {
		n++;
		p++;
	}
	return n;
}

static void
test_leaf(struct weft_ca *ca, EVP_PKEY *k)
{
	struct weft_ca_leaf leaf;
	const char *id = "spiffe://cluster.local/ns/shop/sa/api";
	GENERAL_NAMES *gens;
	GENERAL_NAME *g;
	EXTENDED_KEY_USAGE *eku;
	ASN1_BIT_STRING *ku;
	BASIC_CONSTRAINTS *bc;
	char *csr = make_csr(k, false), *err = NULL;
	X509 *x;
	int crit, i;
	bool server = false, client = false;

	is_int(weft_ca_sign_csr(ca, csr, strlen(csr), id, &leaf, &err), 0,
	    "sign a P-256 CSR");
	is_str(err, NULL, "  no error");
	free(csr);
	if (leaf.cert_pem == NULL)
		return;
	is_int(verify_leaf(leaf.cert_pem, weft_ca_bundle(ca)), X509_V_OK,
	    "  leaf chains to the root");
	is_str(leaf.chain_pem, "", "  no intermediates");
	x = pem_cert(leaf.cert_pem);
	is_int(X509_NAME_entry_count(X509_get_subject_name(x)), 0,
	    "  empty subject (the CSR's is ignored)");
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	is_int(crit, 1, "  SAN critical");
	is_int(gens ? sk_GENERAL_NAME_num(gens) : 0, 1,
	    "  one SAN (the CSR's is ignored)");
	if (gens != NULL && sk_GENERAL_NAME_num(gens) == 1) {
		g = sk_GENERAL_NAME_value(gens, 0);
		is_int(g->type, GEN_URI, "  SAN is a URI");
		is_str((const char *)ASN1_STRING_get0_data(
		    g->d.uniformResourceIdentifier), id, "  SAN is the ID");
	}
	GENERAL_NAMES_free(gens);
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	ok(ku != NULL && crit == 1 && ASN1_BIT_STRING_get_bit(ku, 0) &&
	    !ASN1_BIT_STRING_get_bit(ku, 5), "  keyUsage digitalSignature, "
	    "critical, no keyCertSign");
	ASN1_BIT_STRING_free(ku);
	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	for (i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
		int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));

		server |= nid == NID_server_auth;
		client |= nid == NID_client_auth;
	}
	ok(server && client, "  EKU serverAuth + clientAuth");
	EXTENDED_KEY_USAGE_free(eku);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	ok(bc != NULL && crit == 1 && !bc->ca, "  CA:FALSE, critical");
	BASIC_CONSTRAINTS_free(bc);
	ok(X509_get0_subject_key_id(x) != NULL &&
	    X509_get0_authority_key_id(x) != NULL, "  SKI and AKI");
	is_int(leaf.not_after - fake_now, WEFT_CA_CERT_TTL, "  TTL 24h");
	is_int(fake_now - leaf.not_before, 60, "  backdated 60s");
	is_int(strlen(leaf.serial), 32, "  16-byte serial");
	X509_free(x);
	weft_ca_leaf_clear(&leaf);
}

static void
test_reject(struct weft_ca *ca, EVP_PKEY *p256)
{
	struct weft_ca_leaf leaf;
	const char *id = "spiffe://cluster.local/ns/shop/sa/api";
	EVP_PKEY *rsa = EVP_RSA_gen(2048), *p384 = EVP_EC_gen("P-384");
	char *csr, *err = NULL;

	csr = make_csr(p256, true);
	is_int(weft_ca_sign_csr(ca, csr, strlen(csr), id, &leaf, &err), -1,
	    "bad signature refused");
	ok(err != NULL && strncmp(err, "csr: signature invalid", 22) == 0,
	    "  reason: %s", err);
	ok(leaf.cert_pem == NULL, "  nothing issued");
	free(err);
	free(csr);

	csr = make_csr(rsa, false);
	is_int(weft_ca_sign_csr(ca, csr, strlen(csr), id, &leaf, &err), -1,
	    "RSA key refused");
	ok(err != NULL && strcmp(err, "csr: key is RSA, expected EC P-256") ==
	    0, "  reason: %s", err);
	free(err);
	free(csr);

	csr = make_csr(p384, false);
	is_int(weft_ca_sign_csr(ca, csr, strlen(csr), id, &leaf, &err), -1,
	    "P-384 key refused");
	ok(err != NULL && strcmp(err, "csr: key is EC secp384r1, expected EC "
	    "P-256") == 0, "  reason: %s", err);
	free(err);
	free(csr);

	is_int(weft_ca_sign_csr(ca, "hello", 5, id, &leaf, &err), -1,
	    "not PEM refused");
	ok(err != NULL && strncmp(err, "csr: not a PEM certificate request",
	    34) == 0, "  reason: %s", err);
	free(err);

	csr = make_csr(p256, false);
	is_int(weft_ca_sign_csr(ca, csr, strlen(csr), "spiffe://x/ns/a",
	    &leaf, &err), -1, "invalid ID refused by the signer too");
	free(err);
	free(csr);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p384);
}

/* --- authorisation table -------------------------------------------------------- */

static void
add_pod(struct weft_model *m, const char *ns, const char *name,
    const char *node, const char *sa)
{
	struct weft_snap_pod *p;

	m->all.pods = reallocarray(m->all.pods, m->all.n_pods + 1,
	    sizeof(*p));
	p = &m->all.pods[m->all.n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = strdup(ns);
	p->name = strdup(name);
	p->node = node ? strdup(node) : NULL;
	p->service_account = sa ? strdup(sa) : NULL;
}

static void
test_authorize(void)
{
	static const struct {
		const char	*node, *id;
		int		 code;
		const char	*why;
	} cases[] = {
		{ "node-1", "spiffe://cluster.local/ns/shop/sa/api", 0, "" },
		{ "node-1", "spiffe://cluster.local/ns/shop/sa/default", 0,
		    "" },	/* pod without serviceAccountName, without IP */
		{ "node-2", "spiffe://cluster.local/ns/shop/sa/api", 403,
		    "no pod with service account shop/api is scheduled on "
		    "node node-2" },
		{ "node-1", "spiffe://cluster.local/ns/shop/sa/db", 403,
		    "no pod with service account shop/db is scheduled on "
		    "node node-1" },
		{ "node-1", "spiffe://cluster.local/ns/other/sa/api", 403,
		    "no pod with service account other/api is scheduled on "
		    "node node-1" },
		{ "node-1", "spiffe://cluster.local/ns/shop/sa/pending", 403,
		    "no pod with service account shop/pending is scheduled on "
		    "node node-1" },	/* not scheduled: no nodeName */
		{ "node-1", "spiffe://example.org/ns/shop/sa/api", 400,
		    "spiffeId spiffe://example.org/ns/shop/sa/api: trust "
		    "domain example.org is not ours (cluster.local)" },
		{ "node-1", "spiffe://cluster.local/ns/shop", 400,
		    "spiffeId spiffe://cluster.local/ns/shop: missing path "
		    "segments (expected /ns/<namespace>/sa/<service-account>)" },
		{ "node-1", "https://cluster.local/ns/shop/sa/api", 400,
		    "spiffeId https://cluster.local/ns/shop/sa/api: not a "
		    "spiffe:// URI" },
		{ "node-1", NULL, 400, "spiffeId: required" },
	};
	struct weft_model *m = calloc(1, sizeof(*m));
	struct weft_spiffe_id id;
	char why[512];
	size_t i;
	int code;

	add_pod(m, "shop", "api-1", "node-1", "api");
	add_pod(m, "shop", "web-1", "node-1", NULL);
	add_pod(m, "shop", "db-1", "node-2", "db");
	add_pod(m, "shop", "pending-1", NULL, "pending");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		code = weft_ca_authorize(m, "cluster.local", cases[i].node,
		    cases[i].id, &id, why, sizeof(why));
		is_int(code, cases[i].code, "authorize %s for %s",
		    cases[i].id ? cases[i].id : "(null)", cases[i].node);
		is_str(why, cases[i].why, "  reason");
	}
	code = weft_ca_authorize(m, "cluster.local", "node-1",
	    "spiffe://cluster.local/ns/shop/sa/api", &id, why, sizeof(why));
	is_str(id.service_account, "api", "  parsed ID returned");
	code = weft_ca_authorize(NULL, "cluster.local", "node-1",
	    "spiffe://cluster.local/ns/shop/sa/api", NULL, why, sizeof(why));
	is_int(code, 403, "no model yet: 403");
	weft_model_free(m);
}

/* --- rotation ------------------------------------------------------------------- */

static void
test_rotate(const char *dir, EVP_PKEY *k)
{
	struct weft_ca_config conf = {
		.state_dir = dir, .trust_domain = "cluster.local",
		.cert_ttl = 86400, .overlap = 7200, .now = test_clock,
	};
	struct weft_ca_root_info roots[8];
	struct weft_ca_leaf old_leaf, new_leaf;
	struct weft_ca *ca;
	char *err = NULL, *csr = make_csr(k, false), path[8192], *bundle;
	const char *id = "spiffe://cluster.local/ns/shop/sa/api";
	X509 *x;

	ca = weft_ca_open(&conf, &err);
	ok(ca != NULL, "rotation: CA opened");
	if (ca == NULL) {
		diag("%s", err);
		return;
	}
	weft_ca_sign_csr(ca, csr, strlen(csr), id, &old_leaf, &err);
	is_int(weft_ca_signing_id(ca), 1, "  root 1 signs");
	is_int(weft_ca_rotate(ca, &err), 0, "  rotate");
	is_int(bundle_count(weft_ca_bundle(ca)), 2, "  bundle has 2 roots");
	snprintf(path, sizeof(path), "%s/ca-bundle.pem", dir);
	bundle = slurp(path);
	is_int(bundle ? bundle_count(bundle) : 0, 2,
	    "  bundle file has 2 roots");
	free(bundle);
	is_int(weft_ca_signing_id(ca), 2, "  root 2 signs");
	is_int(weft_ca_roots(ca, roots, 8), 2, "  2 roots listed");
	is_int(roots[0].retire_at, fake_now + 7200, "  root 1 retires after "
	    "the overlap");
	ok(roots[1].signing && !roots[0].signing, "  signing flags");
	weft_ca_sign_csr(ca, csr, strlen(csr), id, &new_leaf, &err);
	ok(new_leaf.cert_pem != NULL, "  signed after rotation");
	x = pem_cert(new_leaf.cert_pem);
	ok(x != NULL && strstr(roots[1].subject, "weft mesh root") != NULL,
	    "  subject %s", roots[1].subject);
	is_int(verify_leaf(new_leaf.cert_pem, weft_ca_bundle(ca)), X509_V_OK,
	    "  new leaf verifies against the bundle");
	is_int(verify_leaf(old_leaf.cert_pem, weft_ca_bundle(ca)), X509_V_OK,
	    "  old leaf still verifies during the overlap");
	X509_free(x);

	/* a restart keeps the schedule */
	weft_ca_free(ca);
	ca = weft_ca_open(&conf, &err);
	ok(ca != NULL, "  reopened during the overlap");
	if (ca == NULL) {
		diag("%s", err);
		return;
	}
	is_int(weft_ca_roots(ca, roots, 8), 2, "  still 2 roots");
	is_int(roots[0].retire_at, fake_now + 7200, "  retirement persisted");
	is_int(weft_ca_signing_id(ca), 2, "  root 2 still signs");
	is_int(weft_ca_next_retirement(ca), fake_now + 7200,
	    "  next retirement");

	fake_now += 7199;
	is_int(weft_ca_expire(ca), 0, "  nothing expires before the end");
	fake_now += 1;
	is_int(weft_ca_expire(ca), 1, "  root 1 dropped when the overlap ends");
	is_int(bundle_count(weft_ca_bundle(ca)), 1, "  bundle has 1 root");
	is_int(weft_ca_next_retirement(ca), 0, "  no retirement pending");
	ok(verify_leaf(old_leaf.cert_pem, weft_ca_bundle(ca)) != X509_V_OK,
	    "  old leaf no longer verifies");
	is_int(verify_leaf(new_leaf.cert_pem, weft_ca_bundle(ca)), X509_V_OK,
	    "  new leaf still verifies");
	snprintf(path, sizeof(path), "%s/ca/root-1.key", dir);
	ok(access(path, F_OK) == -1, "  root 1 key removed");
	weft_ca_free(ca);
	ca = weft_ca_open(&conf, &err);
	ok(ca != NULL && bundle_count(weft_ca_bundle(ca)) == 1 &&
	    weft_ca_signing_id(ca) == 2, "  reopened: root 2 alone");
	weft_ca_free(ca);
	weft_ca_leaf_clear(&old_leaf);
	weft_ca_leaf_clear(&new_leaf);
	free(csr);
}

static void
test_files(const char *dir, const char *cert_file, const char *key_file)
{
	struct weft_ca_config conf = {
		.state_dir = dir, .trust_domain = "cluster.local",
		.cert_ttl = 60, .overlap = 120, .now = test_clock,
		.cert_file = cert_file, .key_file = key_file,
	};
	struct weft_ca *ca;
	char *err = NULL;

	ca = weft_ca_open(&conf, &err);
	ok(ca != NULL, "CA loaded from --ca-cert/--ca-key");
	if (ca == NULL) {
		diag("%s", err);
		free(err);
		return;
	}
	is_int(weft_ca_signing_id(ca), 0, "  external root has id 0");
	is_int(weft_ca_rotate(ca, &err), -1, "  rotation refused");
	ok(err != NULL, "  reason: %s", err);
	free(err);
	weft_ca_free(ca);

	conf.key_file = cert_file;
	ca = weft_ca_open(&conf, &err);
	ok(ca == NULL && err != NULL, "  a certificate as key refused: %s",
	    err);
	free(err);
}

int
main(void)
{
	char tmpl[] = "/tmp/weft-ca-test.XXXXXX", path[4096], path2[4096];
	char *dir, *bundle, *err = NULL;
	struct weft_ca_config conf;
	struct weft_ca *ca, *ca2;
	EVP_PKEY *k;
	int64_t d;

	weft_log_init("test", WEFT_LOG_WARN);
	if ((dir = mkdtemp(tmpl)) == NULL)
		return 1;
	memset(&conf, 0, sizeof(conf));
	conf.state_dir = dir;
	conf.trust_domain = "cluster.local";
	conf.cert_ttl = WEFT_CA_CERT_TTL;
	conf.overlap = 2 * WEFT_CA_CERT_TTL;
	conf.now = test_clock;

	ca = weft_ca_open(&conf, &err);
	ok(ca != NULL, "generate a CA in %s", dir);
	if (ca == NULL) {
		diag("%s", err);
		return tap_done();
	}
	snprintf(path, sizeof(path), "%s/ca/root-1.key", dir);
	is_int(file_mode(path), 0600, "root key mode 0600");
	snprintf(path, sizeof(path), "%s/ca", dir);
	is_int(file_mode(path), 0700, "CA directory mode 0700");
	snprintf(path, sizeof(path), "%s/ca-bundle.pem", dir);
	is_int(file_mode(path), 0644, "bundle mode 0644");
	bundle = slurp(path);
	is_str(bundle, weft_ca_bundle(ca), "bundle file = bundle");
	is_int(bundle ? bundle_count(bundle) : 0, 1, "one root");
	free(bundle);

	ca2 = weft_ca_open(&conf, &err);
	ok(ca2 != NULL, "reload the CA from disk");
	is_str(ca2 ? weft_ca_bundle(ca2) : NULL, weft_ca_bundle(ca),
	    "  same root");
	weft_ca_free(ca2);

	k = EVP_EC_gen("P-256");
	test_leaf(ca, k);
	test_reject(ca, k);
	weft_ca_free(ca);

	test_authorize();

	snprintf(path, sizeof(path), "%s/rot", dir);
	mkdir(path, 0700);
	test_rotate(path, k);

	snprintf(path, sizeof(path), "%s/ca/root-2.crt", dir);
	snprintf(path2, sizeof(path2), "%s/rot/ca/root-2.key", dir);
	snprintf(path, sizeof(path), "%s/rot/ca/root-2.crt", dir);
	{
		char ext[4096];

		snprintf(ext, sizeof(ext), "%s/ext", dir);
		mkdir(ext, 0700);
		test_files(ext, path, path2);
	}

	/* a corrupt state is an error, never a silent new CA */
	snprintf(path, sizeof(path), "%s/ca/state.json", dir);
	{
		FILE *f = fopen(path, "we");

		fputs("{\"signing\": 1, \"roots\": [", f);
		fclose(f);
	}
	ca = weft_ca_open(&conf, &err);
	ok(ca == NULL && err != NULL, "corrupt state refused: %s", err);
	free(err);

	ok(weft_ca_parse_duration("60s", &d) == 0 && d == 60, "60s");
	ok(weft_ca_parse_duration("15m", &d) == 0 && d == 900, "15m");
	ok(weft_ca_parse_duration("24h", &d) == 0 && d == 86400, "24h");
	ok(weft_ca_parse_duration("2d", &d) == 0 && d == 172800, "2d");
	ok(weft_ca_parse_duration("90", &d) == 0 && d == 90, "90");
	ok(weft_ca_parse_duration("0s", &d) == -1, "0s refused");
	ok(weft_ca_parse_duration("1w", &d) == -1, "1w refused");
	ok(weft_ca_parse_duration("-5m", &d) == -1, "-5m refused");
	ok(weft_ca_parse_duration("h", &d) == -1, "h refused");

	EVP_PKEY_free(k);
	{
		char cmd[4200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			diag("cannot remove %s", dir);
	}
	return tap_done();
}
