/* The mesh CA: roots on disk, rotation with overlap, leaf and server
 * certificates, and the node authorisation of CSRs (include/weft/ca.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "weft/ca.h"
#include "weft/log.h"
#include "weft/manifest.h"

#define CA_DIR			"ca"
#define CA_STATE_FILE		"state.json"
#define CA_MAX_ROOTS		8	/* rotations faster than overlaps end */
#define CA_BACKDATE		60	/* notBefore = now - 60 s: clock skew */
#define CA_MAX_CSR		16384

struct ca_root {
	unsigned	 id;		/* 0: from --ca-cert */
	X509		*cert;		/* owned */
	EVP_PKEY	*key;		/* owned */
	time_t		 retire_at;	/* 0: stays */
};

struct weft_ca {
	struct weft_ca_config conf;	/* strings below are the owned copies */
	char		*state_dir;	/* owned */
	char		*trust_domain;	/* owned */
	char		*ca_dir;	/* owned: <state_dir>/ca */
	bool		 external;	/* from --ca-cert/--ca-key */
	struct ca_root	 roots[CA_MAX_ROOTS];	/* sorted by id */
	size_t		 n_roots;
	size_t		 signing;	/* index into roots */
	char		*bundle;	/* owned: PEM of every root */
};

/* --- small helpers ------------------------------------------------------------ */

static void __attribute__((format(printf, 2, 3)))
ca_err(char **err, const char *fmt, ...)
{
	unsigned long e;
	va_list ap;
	char *msg = NULL, *full = NULL, ebuf[256];

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	/* the innermost OpenSSL reason helps ("bad decrypt", "wrong tag") */
	if ((e = ERR_peek_last_error()) != 0 && msg != NULL) {
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
		if (asprintf(&full, "%s (%s)", msg, ebuf) == -1)
			full = NULL;
		if (full != NULL) {
			free(msg);
			msg = full;
		}
	}
	ERR_clear_error();
	if (err != NULL)
		*err = msg;
	else
		free(msg);
}

static time_t
ca_now(const struct weft_ca *ca)
{
	return ca->conf.now != NULL ? ca->conf.now(ca->conf.now_arg) :
	    time(NULL);
}

void
weft_ca_rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, len,
	    "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "?");
}

time_t
weft_ca_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

void
weft_ca_serial_hex(const X509 *c, char *buf, size_t len)
{
	BIGNUM *bn;
	char *hex, *p;

	snprintf(buf, len, "?");
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL)) == NULL)
		return;
	if ((hex = BN_bn2hex(bn)) != NULL) {
		for (p = hex; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		snprintf(buf, len, "%s", hex);
		OPENSSL_free(hex);
	}
	BN_free(bn);
}

int
weft_ca_parse_duration(const char *s, int64_t *secs)
{
	char *end;
	long long n;
	int64_t mult = 1;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || n <= 0)
		return -1;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60;
	else if (strcmp(end, "h") == 0)
		mult = 3600;
	else if (strcmp(end, "d") == 0)
		mult = 86400;
	else
		return -1;
	if (n > (int64_t)100 * 365 * 86400 / mult)
		return -1;
	*secs = (int64_t)n * mult;
	return 0;
}

/* PEM text of a certificate or key, malloc'd, NUL-terminated. */
static char *
ca_bio_string(BIO *b)
{
	char *data, *s = NULL;
	long len;

	len = BIO_get_mem_data(b, &data);
	if (len >= 0 && (s = malloc((size_t)len + 1)) != NULL) {
		memcpy(s, data, (size_t)len);
		s[len] = '\0';
	}
	return s;
}

static char *
ca_cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *s = NULL;

	if (b != NULL && PEM_write_bio_X509(b, x) == 1)
		s = ca_bio_string(b);
	BIO_free(b);
	return s;
}

/* Write data to path atomically (tmp + fsync + rename) with mode. */
static int
ca_write_file(const char *path, const char *data, size_t len, mode_t mode,
    char **err)
{
	char tmp[4096];
	size_t off = 0;
	ssize_t w;
	int fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		ca_err(err, "%s: path too long", path);
		return -1;
	}
	(void)unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    mode)) == -1) {
		ca_err(err, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	while (off < len) {
		if ((w = write(fd, data + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	/* the umask may have narrowed mode; the bundle must be readable */
	if (fchmod(fd, mode) == -1 || fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) == -1) {
		ca_err(err, "%s: %s", path, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	return 0;
fail:
	ca_err(err, "%s: %s", tmp, strerror(errno));
	if (fd != -1)
		close(fd);
	(void)unlink(tmp);
	return -1;
}

static void
ca_random_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn;

	if (RAND_bytes(b, sizeof(b)) != 1)
		fatalx("%s: RAND_bytes failed", __func__);
	/* positive (top bit clear) and never shorter than 16 bytes */
	b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
	if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		fatalx("%s: out of memory", __func__);
	BN_free(bn);
}

static int
ca_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int rc;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	rc = X509_add_ext(x, e, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(e);
	return rc;
}

static bool
ca_key_is_p256(EVP_PKEY *k)
{
	char group[64];
	size_t len = 0;

	if (!EVP_PKEY_is_a(k, "EC"))
		return false;
	if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, sizeof(group), &len) != 1)
		return false;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

static void
ca_key_describe(EVP_PKEY *k, char *buf, size_t len)
{
	char group[64];
	size_t glen = 0;

	if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_utf8_string_param(k,
	    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen) == 1)
		snprintf(buf, len, "EC %s", group);
	else
		snprintf(buf, len, "%s", EVP_PKEY_get0_type_name(k) ?
		    EVP_PKEY_get0_type_name(k) : "unknown");
}

/* --- roots ---------------------------------------------------------------------- */

static void
ca_root_clear(struct ca_root *r)
{
	X509_free(r->cert);
	EVP_PKEY_free(r->key);
	memset(r, 0, sizeof(*r));
}

/* A new self-signed P-256 root valid from now for WEFT_CA_ROOT_DAYS. */
static int
ca_root_generate(struct weft_ca *ca, unsigned id, struct ca_root *out,
    char **err)
{
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	X509_NAME *name;
	char cn[128];
	time_t now = ca_now(ca);
	struct tm tm;

	memset(out, 0, sizeof(*out));
	if ((k = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL)
		goto fail;
	gmtime_r(&now, &tm);
	strftime(cn, sizeof(cn), "weft mesh root %Y-%m-%dT%H:%M:%SZ", &tm);
	name = X509_get_subject_name(x);
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	    (const unsigned char *)ca->trust_domain, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    ASN1_TIME_set(X509_getm_notBefore(x), now - CA_BACKDATE) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x),
	    now + (time_t)WEFT_CA_ROOT_DAYS * 86400) == NULL ||
	    X509_set_pubkey(x, k) != 1)
		goto fail;
	ca_random_serial(x);
	if (ca_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") == -1 ||
	    ca_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") == -1 ||
	    ca_add_ext(x, x, NID_subject_key_identifier, "hash") == -1 ||
	    ca_add_ext(x, x, NID_authority_key_identifier, "keyid:always") == -1 ||
	    X509_sign(x, k, EVP_sha256()) == 0)
		goto fail;
	out->id = id;
	out->cert = x;
	out->key = k;
	return 0;
fail:
	ca_err(err, "cannot generate a root certificate");
	X509_free(x);
	EVP_PKEY_free(k);
	return -1;
}

static int
ca_root_path(const struct weft_ca *ca, unsigned id, const char *ext,
    char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s/root-%u.%s", ca->ca_dir, id,
	    ext) >= len)
		return -1;
	return 0;
}

static int
ca_root_write(struct weft_ca *ca, const struct ca_root *r, char **err)
{
	char path[4096], *pem = NULL;
	BIO *b = NULL;
	int rc = -1;

	if ((b = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(b, r->key, NULL, NULL, 0, NULL,
	    NULL) != 1 || (pem = ca_bio_string(b)) == NULL) {
		ca_err(err, "cannot encode the root key");
		goto done;
	}
	if (ca_root_path(ca, r->id, "key", path, sizeof(path)) == -1 ||
	    ca_write_file(path, pem, strlen(pem), 0600, err) == -1)
		goto done;
	explicit_bzero(pem, strlen(pem));
	free(pem);
	if ((pem = ca_cert_pem(r->cert)) == NULL) {
		ca_err(err, "cannot encode the root certificate");
		goto done;
	}
	if (ca_root_path(ca, r->id, "crt", path, sizeof(path)) == -1 ||
	    ca_write_file(path, pem, strlen(pem), 0644, err) == -1)
		goto done;
	rc = 0;
done:
	if (pem != NULL)
		explicit_bzero(pem, strlen(pem));
	free(pem);
	BIO_free(b);
	return rc;
}

/* Load a certificate and its key, check that they belong together and that
 * the certificate is a CA. */
static int
ca_root_load(const char *cert_path, const char *key_path, struct ca_root *r,
    char **err)
{
	struct stat st;
	FILE *f;

	memset(r, 0, sizeof(*r));
	if ((f = fopen(cert_path, "re")) == NULL) {
		ca_err(err, "%s: %s", cert_path, strerror(errno));
		return -1;
	}
	r->cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (r->cert == NULL) {
		ca_err(err, "%s: not a PEM certificate", cert_path);
		return -1;
	}
	if ((f = fopen(key_path, "re")) == NULL) {
		ca_err(err, "%s: %s", key_path, strerror(errno));
		goto fail;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("%s: mode %03o: a CA key should be readable by its "
		    "owner only", key_path, (unsigned)(st.st_mode & 0777));
	r->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (r->key == NULL) {
		ca_err(err, "%s: not a PEM private key", key_path);
		goto fail;
	}
	if (X509_check_private_key(r->cert, r->key) != 1) {
		ca_err(err, "%s: key does not match certificate %s", key_path,
		    cert_path);
		goto fail;
	}
	if (X509_check_ca(r->cert) == 0) {
		ca_err(err, "%s: not a CA certificate", cert_path);
		goto fail;
	}
	return 0;
fail:
	ca_root_clear(r);
	return -1;
}

/* --- state ---------------------------------------------------------------------- */

static int
ca_state_save(struct weft_ca *ca, char **err)
{
	struct json_object *root, *arr, *o;
	char path[4096];
	const char *text;
	size_t i;
	int rc = -1;

	if ((root = json_object_new_object()) == NULL ||
	    (arr = json_object_new_array()) == NULL) {
		json_object_put(root);
		ca_err(err, "out of memory");
		return -1;
	}
	json_object_object_add(root, "signing",
	    json_object_new_int64(ca->roots[ca->signing].id));
	json_object_object_add(root, "roots", arr);
	for (i = 0; i < ca->n_roots; i++) {
		if ((o = json_object_new_object()) == NULL)
			goto oom;
		json_object_array_add(arr, o);
		json_object_object_add(o, "id",
		    json_object_new_int64(ca->roots[i].id));
		if (ca->roots[i].retire_at != 0)
			json_object_object_add(o, "retire_at",
			    json_object_new_int64(ca->roots[i].retire_at));
	}
	if ((text = json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PRETTY)) == NULL)
		goto oom;
	snprintf(path, sizeof(path), "%s/" CA_STATE_FILE, ca->ca_dir);
	rc = ca_write_file(path, text, strlen(text), 0600, err);
	json_object_put(root);
	return rc;
oom:
	json_object_put(root);
	ca_err(err, "out of memory");
	return -1;
}

/* Read state.json and the roots it names.  Returns 1 when loaded, 0 when
 * there is no state yet, -1 on error. */
static int
ca_state_load(struct weft_ca *ca, char **err)
{
	struct json_object *root = NULL, *arr, *o, *v;
	char path[4096], cpath[4096];
	int64_t signing = -1, id;
	size_t i, n;

	snprintf(path, sizeof(path), "%s/" CA_STATE_FILE, ca->ca_dir);
	if (access(path, F_OK) == -1 && errno == ENOENT)
		return 0;
	if ((root = json_object_from_file(path)) == NULL ||
	    !json_object_is_type(root, json_type_object)) {
		ca_err(err, "%s: not a JSON object", path);
		goto fail;
	}
	if (json_object_object_get_ex(root, "signing", &v) &&
	    json_object_is_type(v, json_type_int))
		signing = json_object_get_int64(v);
	if (!json_object_object_get_ex(root, "roots", &arr) ||
	    !json_object_is_type(arr, json_type_array) ||
	    (n = json_object_array_length(arr)) == 0) {
		ca_err(err, "%s: roots: expected a non-empty array", path);
		goto fail;
	}
	if (n > CA_MAX_ROOTS) {
		ca_err(err, "%s: roots: at most %d", path, CA_MAX_ROOTS);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		o = json_object_array_get_idx(arr, i);
		if (!json_object_object_get_ex(o, "id", &v) ||
		    !json_object_is_type(v, json_type_int) ||
		    (id = json_object_get_int64(v)) < 1 || id > 1000000 ||
		    (i > 0 && (unsigned)id <= ca->roots[i - 1].id)) {
			ca_err(err, "%s: roots[%zu].id: expected increasing "
			    "numbers from 1", path, i);
			goto fail;
		}
		if (ca_root_path(ca, (unsigned)id, "crt", cpath,
		    sizeof(cpath)) == -1 || ca_root_path(ca, (unsigned)id,
		    "key", path, sizeof(path)) == -1 ||
		    ca_root_load(cpath, path, &ca->roots[i], err) == -1)
			goto fail;
		ca->roots[i].id = (unsigned)id;
		ca->n_roots++;
		if (json_object_object_get_ex(o, "retire_at", &v) &&
		    json_object_is_type(v, json_type_int))
			ca->roots[i].retire_at = json_object_get_int64(v);
		if (id == signing)
			ca->signing = i;
	}
	snprintf(path, sizeof(path), "%s/" CA_STATE_FILE, ca->ca_dir);
	if (signing < 1 || ca->roots[ca->signing].id != (unsigned)signing) {
		ca_err(err, "%s: signing: expected the id of a root", path);
		goto fail;
	}
	if (ca->roots[ca->signing].retire_at != 0) {
		ca_err(err, "%s: the signing root %" PRId64 " is retiring",
		    path, signing);
		goto fail;
	}
	json_object_put(root);
	return 1;
fail:
	json_object_put(root);
	for (i = 0; i < ca->n_roots; i++)
		ca_root_clear(&ca->roots[i]);
	ca->n_roots = 0;
	return -1;
}

/* Rebuild the bundle text and write <state_dir>/ca-bundle.pem. */
static int
ca_bundle_update(struct weft_ca *ca, char **err)
{
	char path[4096], *pem, *nb;
	size_t i, len = 0, plen;
	char *b = NULL;

	for (i = 0; i < ca->n_roots; i++) {
		if ((pem = ca_cert_pem(ca->roots[i].cert)) == NULL)
			goto oom;
		plen = strlen(pem);
		if ((nb = realloc(b, len + plen + 1)) == NULL) {
			free(pem);
			goto oom;
		}
		b = nb;
		memcpy(b + len, pem, plen + 1);
		len += plen;
		free(pem);
	}
	if (b == NULL)
		goto oom;
	free(ca->bundle);
	ca->bundle = b;
	snprintf(path, sizeof(path), "%s/" WEFT_CA_BUNDLE_FILE,
	    ca->state_dir);
	return ca_write_file(path, b, len, 0644, err);
oom:
	free(b);
	ca_err(err, "out of memory");
	return -1;
}

static int
ca_mkdir(const char *path, char **err)
{
	struct stat st;

	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		ca_err(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &st) == -1) {
		ca_err(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 077) != 0 && chmod(path, 0700) == -1) {
		ca_err(err, "%s: chmod: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* --- lifecycle ------------------------------------------------------------------ */

struct weft_ca *
weft_ca_open(const struct weft_ca_config *conf, char **err)
{
	struct weft_ca *ca;
	char *e = NULL;
	int r;

	*err = NULL;
	if (conf->state_dir == NULL || conf->cert_ttl <= 0 ||
	    (conf->cert_file == NULL) != (conf->key_file == NULL)) {
		ca_err(err, "CA: state directory, positive TTL, and both or "
		    "neither of --ca-cert and --ca-key required");
		return NULL;
	}
	if ((ca = calloc(1, sizeof(*ca))) == NULL) {
		ca_err(err, "out of memory");
		return NULL;
	}
	ca->conf = *conf;
	ca->state_dir = strdup(conf->state_dir);
	ca->trust_domain = strdup(conf->trust_domain ? conf->trust_domain :
	    "cluster.local");
	if (ca->state_dir == NULL || ca->trust_domain == NULL ||
	    asprintf(&ca->ca_dir, "%s/" CA_DIR, conf->state_dir) == -1) {
		ca->ca_dir = NULL;
		ca_err(err, "out of memory");
		goto fail;
	}
	ca->conf.state_dir = ca->state_dir;
	ca->conf.trust_domain = ca->trust_domain;
	ca->conf.cert_file = ca->conf.key_file = NULL;

	if (conf->cert_file != NULL) {
		if (ca_root_load(conf->cert_file, conf->key_file,
		    &ca->roots[0], err) == -1)
			goto fail;
		ca->n_roots = 1;
		ca->external = true;
		log_info("CA: root loaded from %s", conf->cert_file);
	} else {
		if (ca_mkdir(ca->ca_dir, err) == -1)
			goto fail;
		if ((r = ca_state_load(ca, err)) == -1)
			goto fail;
		if (r == 0) {
			if (ca_root_generate(ca, 1, &ca->roots[0], err) == -1)
				goto fail;
			ca->n_roots = 1;
			if (ca_root_write(ca, &ca->roots[0], err) == -1 ||
			    ca_state_save(ca, err) == -1)
				goto fail;
			log_info("CA: generated root 1 in %s", ca->ca_dir);
		} else
			log_info("CA: %zu root(s) loaded from %s, signing with "
			    "root %u", ca->n_roots, ca->ca_dir,
			    ca->roots[ca->signing].id);
		if (weft_ca_expire(ca) == 1)
			return ca;	/* the bundle was written */
	}
	if (ca_bundle_update(ca, &e) == -1) {
		*err = e;
		goto fail;
	}
	return ca;
fail:
	weft_ca_free(ca);
	return NULL;
}

void
weft_ca_free(struct weft_ca *ca)
{
	size_t i;

	if (ca == NULL)
		return;
	for (i = 0; i < ca->n_roots; i++)
		ca_root_clear(&ca->roots[i]);
	free(ca->bundle);
	free(ca->ca_dir);
	free(ca->state_dir);
	free(ca->trust_domain);
	free(ca);
}

const char *
weft_ca_bundle(const struct weft_ca *ca)
{
	return ca->bundle;
}

unsigned
weft_ca_signing_id(const struct weft_ca *ca)
{
	return ca->roots[ca->signing].id;
}

size_t
weft_ca_roots(const struct weft_ca *ca, struct weft_ca_root_info *out,
    size_t n)
{
	size_t i;

	for (i = 0; i < ca->n_roots && i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].id = ca->roots[i].id;
		weft_ca_serial_hex(ca->roots[i].cert, out[i].serial,
		    sizeof(out[i].serial));
		X509_NAME_oneline(X509_get_subject_name(ca->roots[i].cert),
		    out[i].subject, sizeof(out[i].subject));
		out[i].not_after = weft_ca_asn1_time(
		    X509_get0_notAfter(ca->roots[i].cert));
		out[i].retire_at = ca->roots[i].retire_at;
		out[i].signing = i == ca->signing;
	}
	return i;
}

int
weft_ca_rotate(struct weft_ca *ca, char **err)
{
	struct ca_root r;
	unsigned id;
	time_t old_retire;
	size_t old;

	*err = NULL;
	if (ca->external) {
		ca_err(err, "the CA was loaded from --ca-cert/--ca-key: rotate "
		    "by replacing those files and restarting");
		return -1;
	}
	if (ca->n_roots >= CA_MAX_ROOTS) {
		ca_err(err, "already %d roots in the bundle: wait for the "
		    "overlap of the oldest to end", CA_MAX_ROOTS);
		return -1;
	}
	id = ca->roots[ca->n_roots - 1].id + 1;
	if (ca_root_generate(ca, id, &r, err) == -1 ||
	    ca_root_write(ca, &r, err) == -1) {
		ca_root_clear(&r);
		return -1;
	}
	old = ca->signing;
	old_retire = ca->roots[old].retire_at;
	ca->roots[old].retire_at = ca_now(ca) + (time_t)ca->conf.overlap;
	ca->roots[ca->n_roots] = r;
	ca->signing = ca->n_roots++;
	if (ca_state_save(ca, err) == -1) {
		/* back to the state on disk: the old root keeps signing */
		ca->roots[old].retire_at = old_retire;
		ca->signing = old;
		ca_root_clear(&ca->roots[--ca->n_roots]);
		return -1;
	}
	if (ca_bundle_update(ca, err) == -1)
		log_warnx("CA: %s", *err);	/* memory is right; file late */
	free(*err);
	*err = NULL;
	log_info("CA: rotated: root %u signs; root %u stays trusted for "
	    "%" PRId64 "s", id, ca->roots[old].id, ca->conf.overlap);
	return 0;
}

int
weft_ca_expire(struct weft_ca *ca)
{
	time_t now = ca_now(ca);
	unsigned signing_id = ca->roots[ca->signing].id;
	char *err = NULL;
	size_t i, j;
	bool changed = false;

	for (i = j = 0; i < ca->n_roots; i++) {
		if (i != ca->signing && ca->roots[i].retire_at != 0 &&
		    ca->roots[i].retire_at <= now) {
			char path[4096];

			log_info("CA: root %u left the trust bundle (overlap "
			    "ended)", ca->roots[i].id);
			if (ca_root_path(ca, ca->roots[i].id, "key", path,
			    sizeof(path)) == 0)
				(void)unlink(path);
			if (ca_root_path(ca, ca->roots[i].id, "crt", path,
			    sizeof(path)) == 0)
				(void)unlink(path);
			ca_root_clear(&ca->roots[i]);
			changed = true;
			continue;
		}
		ca->roots[j++] = ca->roots[i];
	}
	if (!changed)
		return 0;
	for (i = j; i < ca->n_roots; i++)
		memset(&ca->roots[i], 0, sizeof(ca->roots[i]));
	ca->n_roots = j;
	for (i = 0; i < ca->n_roots; i++)
		if (ca->roots[i].id == signing_id)
			ca->signing = i;
	if (ca_state_save(ca, &err) == -1 || ca_bundle_update(ca, &err) == -1)
		log_warnx("CA: %s", err);
	free(err);
	return 1;
}

time_t
weft_ca_next_retirement(const struct weft_ca *ca)
{
	time_t t = 0;
	size_t i;

	for (i = 0; i < ca->n_roots; i++)
		if (ca->roots[i].retire_at != 0 &&
		    (t == 0 || ca->roots[i].retire_at < t))
			t = ca->roots[i].retire_at;
	return t;
}

/* --- issuing -------------------------------------------------------------------- */

/* A leaf for pubkey, signed by root: empty subject (then the SAN is
 * critical, as SPIFFE requires) unless cn is given. */
static X509 *
ca_leaf(struct weft_ca *ca, struct ca_root *root, EVP_PKEY *pubkey,
    const char *cn, const char *san, const char *eku, int64_t ttl,
    char **err)
{
	time_t now = ca_now(ca);
	char *san_ext = NULL;
	X509 *x;

	if ((x = X509_new()) == NULL)
		goto fail;
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(root->cert)) != 1 ||
	    ASN1_TIME_set(X509_getm_notBefore(x), now - CA_BACKDATE) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), now + (time_t)ttl) == NULL ||
	    X509_set_pubkey(x, pubkey) != 1)
		goto fail;
	if (cn != NULL && X509_NAME_add_entry_by_txt(X509_get_subject_name(x),
	    "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1)
		goto fail;
	ca_random_serial(x);
	if (asprintf(&san_ext, "%s%s", cn == NULL ? "critical," : "",
	    san) == -1) {
		san_ext = NULL;
		goto fail;
	}
	if (ca_add_ext(x, root->cert, NID_basic_constraints,
	    "critical,CA:FALSE") == -1 ||
	    ca_add_ext(x, root->cert, NID_key_usage,
	    "critical,digitalSignature") == -1 ||
	    ca_add_ext(x, root->cert, NID_ext_key_usage, eku) == -1 ||
	    ca_add_ext(x, root->cert, NID_subject_key_identifier,
	    "hash") == -1 ||
	    ca_add_ext(x, root->cert, NID_authority_key_identifier,
	    "keyid:always") == -1 ||
	    ca_add_ext(x, root->cert, NID_subject_alt_name, san_ext) == -1 ||
	    X509_sign(x, root->key, EVP_sha256()) == 0)
		goto fail;
	free(san_ext);
	return x;
fail:
	ca_err(err, "cannot issue a certificate");
	free(san_ext);
	X509_free(x);
	return NULL;
}

int
weft_ca_sign_csr(struct weft_ca *ca, const char *csr_pem, size_t len,
    const char *spiffe_id, struct weft_ca_leaf *out, char **err)
{
	X509_REQ *req = NULL;
	EVP_PKEY *pk;
	X509 *x = NULL;
	BIO *b = NULL;
	char *san = NULL, kdesc[96];
	int rc = -1;

	*err = NULL;
	memset(out, 0, sizeof(*out));
	if (weft_spiffe_parse(spiffe_id, NULL, NULL) == -1) {
		ca_err(err, "spiffeId: not a valid SPIFFE ID");
		return -1;
	}
	if (len == 0 || len > CA_MAX_CSR) {
		ca_err(err, "csr: expected 1-%d bytes of PEM", CA_MAX_CSR);
		return -1;
	}
	if ((b = BIO_new_mem_buf(csr_pem, (int)len)) == NULL) {
		ca_err(err, "out of memory");
		return -1;
	}
	if ((req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL)) == NULL) {
		ca_err(err, "csr: not a PEM certificate request");
		goto done;
	}
	if ((pk = X509_REQ_get0_pubkey(req)) == NULL) {
		ca_err(err, "csr: unreadable public key");
		goto done;
	}
	if (!ca_key_is_p256(pk)) {
		ca_key_describe(pk, kdesc, sizeof(kdesc));
		ca_err(err, "csr: key is %s, expected EC P-256", kdesc);
		goto done;
	}
	if (X509_REQ_verify(req, pk) != 1) {
		ca_err(err, "csr: signature invalid");
		goto done;
	}
	if (asprintf(&san, "URI:%s", spiffe_id) == -1) {
		san = NULL;
		ca_err(err, "out of memory");
		goto done;
	}
	if ((x = ca_leaf(ca, &ca->roots[ca->signing], pk, NULL, san, "serverAuth,clientAuth",
	    ca->conf.cert_ttl, err)) == NULL)
		goto done;
	if ((out->cert_pem = ca_cert_pem(x)) == NULL ||
	    (out->chain_pem = strdup("")) == NULL) {
		ca_err(err, "out of memory");
		goto done;
	}
	weft_ca_serial_hex(x, out->serial, sizeof(out->serial));
	out->not_before = weft_ca_asn1_time(X509_get0_notBefore(x));
	out->not_after = weft_ca_asn1_time(X509_get0_notAfter(x));
	rc = 0;
done:
	if (rc == -1)
		weft_ca_leaf_clear(out);
	free(san);
	X509_free(x);
	X509_REQ_free(req);
	BIO_free(b);
	ERR_clear_error();
	return rc;
}

void
weft_ca_leaf_clear(struct weft_ca_leaf *leaf)
{
	free(leaf->cert_pem);
	free(leaf->chain_pem);
	memset(leaf, 0, sizeof(*leaf));
}

int
weft_ca_issue_server(struct weft_ca *ca, const char *const *sans,
    size_t n_sans, int64_t ttl, EVP_PKEY **key, X509 **cert, char **err)
{
	unsigned char ab[16];
	char *list = NULL, *nl;
	size_t i, len = 0;
	const char *type;
	struct ca_root *root;
	time_t now = ca_now(ca);

	*err = NULL;
	*key = NULL;
	*cert = NULL;
	for (i = 0; i < n_sans; i++) {
		if (inet_pton(AF_INET, sans[i], ab) == 1 ||
		    inet_pton(AF_INET6, sans[i], ab) == 1)
			type = "IP";
		else if (weft_name_is_dns_subdomain(sans[i]))
			type = "DNS";
		else {
			ca_err(err, "TLS SAN %s: expected an IP address or a "
			    "DNS name", sans[i]);
			free(list);
			return -1;
		}
		if ((nl = realloc(list, len + strlen(sans[i]) + 8)) == NULL) {
			free(list);
			ca_err(err, "out of memory");
			return -1;
		}
		list = nl;
		len += (size_t)sprintf(list + len, "%s%s:%s", len ? "," : "",
		    type, sans[i]);
	}
	if (list == NULL) {
		ca_err(err, "TLS: no SAN");
		return -1;
	}
	if ((*key = EVP_EC_gen("P-256")) == NULL) {
		ca_err(err, "cannot generate a key");
		free(list);
		return -1;
	}
	/* Clients of the API trust the bundle they were installed with,
	 * which may predate a rotation: the oldest root with more than half
	 * the overlap left signs, and never beyond its retirement. */
	root = &ca->roots[ca->signing];
	for (i = 0; i < ca->n_roots; i++)
		if (ca->roots[i].retire_at == 0 ||
		    ca->roots[i].retire_at - now > ca->conf.overlap / 2) {
			root = &ca->roots[i];
			break;
		}
	if (root->retire_at != 0 && ttl > root->retire_at - now)
		ttl = root->retire_at - now;
	*cert = ca_leaf(ca, root, *key, "weft controller", list,
	    "serverAuth", ttl, err);
	free(list);
	if (*cert == NULL) {
		EVP_PKEY_free(*key);
		*key = NULL;
		return -1;
	}
	return 0;
}

/* --- authorisation -------------------------------------------------------------- */

int
weft_ca_authorize(const struct weft_model *m, const char *trust_domain,
    const char *node, const char *spiffe_id, struct weft_spiffe_id *id,
    char *why, size_t why_len)
{
	struct weft_spiffe_id tmp;
	const struct weft_snap_pod *p;
	const char *reason;
	size_t i;

	if (id == NULL)
		id = &tmp;
	if (spiffe_id == NULL) {
		snprintf(why, why_len, "spiffeId: required");
		return 400;
	}
	if (weft_spiffe_parse(spiffe_id, id, &reason) == -1) {
		snprintf(why, why_len, "spiffeId %.*s: %s", 200, spiffe_id,
		    reason);
		return 400;
	}
	if (strcmp(id->trust_domain, trust_domain) != 0) {
		snprintf(why, why_len, "spiffeId %s: trust domain %s is not "
		    "ours (%s)", spiffe_id, id->trust_domain, trust_domain);
		return 400;
	}
	for (i = 0; m != NULL && i < m->all.n_pods; i++) {
		p = &m->all.pods[i];
		if (p->node != NULL && strcmp(p->node, node) == 0 &&
		    strcmp(p->namespace, id->namespace) == 0 &&
		    strcmp(p->service_account ? p->service_account : "default",
		    id->service_account) == 0) {
			why[0] = '\0';
			return 0;
		}
	}
	snprintf(why, why_len, "no pod with service account %s/%s is "
	    "scheduled on node %s", id->namespace, id->service_account, node);
	return 403;
}
