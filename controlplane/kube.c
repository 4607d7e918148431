/* A Kubernetes API client on the controller's event loop: configuration
 * (in-cluster or kubeconfig), HTTP/1.1 requests over TLS, streamed watch
 * bodies, TokenReview.
 *
 * One connection per request, "Connection: close": a watch holds its
 * connection for minutes anyway, lists are a handful of pages, and a fresh
 * connection makes every reconnect the normal path.  Responses go through
 * llhttp, which undoes the chunked transfer coding the API server uses
 * for watches and large lists; a watch body is a sequence of JSON objects
 * that json-c's tokener takes apart as the bytes arrive, so an event split
 * across chunks or TLS records is no special case.
 *
 * Results are delivered from a zero-delay timer, after the connection has
 * been freed, so a callback may start new requests. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>
#include <llhttp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "weft/kube.h"
#include "weft/log.h"

#define KUBE_MAX_BODY		(256u << 20)	/* a collected body */
#define KUBE_MAX_EVENT		(64u << 20)	/* one watch event */
#define KUBE_JSON_DEPTH		128	/* managedFields nest deeply */
#define KUBE_MAX_FILE		(1u << 20)	/* token, CA, kubeconfig */

struct weft_kube {
	struct event_base *base;	/* borrowed */
	struct evdns_base *dns;		/* owned; NULL until a name is used */
	SSL_CTX		*ssl_ctx;	/* owned; NULL for http:// */
	char		*server;	/* owned: as configured */
	char		*host;		/* owned: without [] */
	char		*prefix;	/* owned: path prefix, "" usually */
	uint16_t	 port;
	bool		 host_is_ip;
	char		*sni;		/* owned: name checked and sent */
	char		*token;		/* owned: current bearer token */
	char		*token_file;	/* owned; NULL: token is fixed */
	struct timespec	 token_mtime;
	off_t		 token_size;
	char		*namespace;	/* owned; may be NULL */
	TAILQ_HEAD(, weft_kube_req) reqs;
};

struct weft_kube_req {
	TAILQ_ENTRY(weft_kube_req) entry;
	struct weft_kube *k;		/* borrowed */
	struct bufferevent *bev;	/* owned; NULL once closed */
	struct event	*ev_done;	/* owned: delivers the result */
	llhttp_t	 parser;
	struct evbuffer	*body;		/* owned: collected body */
	struct json_tokener *tok;	/* owned: streaming */
	size_t		 event_bytes;	/* bytes into the current event */
	weft_kube_event_cb on_event;
	weft_kube_done_cb done;
	void		*arg;
	int		 status;
	bool		 streaming;	/* 200 with on_event */
	bool		 complete;	/* the message ended */
	bool		 finished;	/* result decided; waiting for ev_done */
	bool		 cancelled;
	bool		 got_bytes;	/* the server sent something */
	int		 busy;		/* inside a callback of ours */
	char		 error[256];
	char		 method[8];
	char		*path;		/* owned, for debug logs */
};

/* --- small helpers ---------------------------------------------------------- */

static char *
kube_read_file(const char *path, size_t *lenp)
{
	FILE *f;
	char *buf;
	size_t n;

	if ((f = fopen(path, "re")) == NULL)
		return NULL;
	if ((buf = malloc(KUBE_MAX_FILE + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, KUBE_MAX_FILE + 1, f);
	if (ferror(f) || n > KUBE_MAX_FILE) {
		free(buf);
		fclose(f);
		errno = n > KUBE_MAX_FILE ? EFBIG : EIO;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	if (lenp != NULL)
		*lenp = n;
	return buf;
}

/* The file's content without trailing white space; NULL (errno) when it
 * cannot be read or is empty. */
static char *
kube_read_trimmed(const char *path)
{
	char *s, *end;

	if ((s = kube_read_file(path, NULL)) == NULL)
		return NULL;
	end = s + strlen(s);
	while (end > s && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (*s == '\0') {
		free(s);
		errno = ENODATA;
		return NULL;
	}
	return s;
}

static int __attribute__((format(printf, 2, 3)))
kube_err(char **err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) == -1)
		*err = NULL;
	va_end(ap);
	return -1;
}

/* base64 (standard alphabet, padding, line breaks allowed) into a
 * NUL-terminated malloc'd string. */
static char *
kube_base64_decode(const char *in)
{
	size_t len = strlen(in), i, j = 0;
	char *clean, *out;
	int n;

	if ((clean = malloc(len + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++)
		if (in[i] != '\n' && in[i] != '\r' && in[i] != ' ')
			clean[j++] = in[i];
	clean[j] = '\0';
	if (j % 4 != 0 || (out = malloc(j / 4 * 3 + 1)) == NULL) {
		free(clean);
		return NULL;
	}
	n = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)clean,
	    (int)j);
	if (n < 0) {
		free(clean);
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as output bytes */
	if (j >= 1 && clean[j - 1] == '=')
		n--;
	if (j >= 2 && clean[j - 2] == '=')
		n--;
	out[n] = '\0';
	free(clean);
	return out;
}

/* --- configuration ------------------------------------------------------------ */

void
weft_kube_config_clear(struct weft_kube_config *cfg)
{
	free(cfg->server);
	free(cfg->ca_file);
	free(cfg->ca_pem);
	free(cfg->tls_server_name);
	if (cfg->token != NULL)
		explicit_bzero(cfg->token, strlen(cfg->token));
	free(cfg->token);
	free(cfg->token_file);
	free(cfg->cert_pem);
	if (cfg->key_pem != NULL)
		explicit_bzero(cfg->key_pem, strlen(cfg->key_pem));
	free(cfg->key_pem);
	free(cfg->namespace);
	memset(cfg, 0, sizeof(*cfg));
}

int
weft_kube_config_in_cluster(struct weft_kube_config *cfg, char **err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("WEFT_SERVICEACCOUNT_DIR");
	char path[4096];
	int r;

	memset(cfg, 0, sizeof(*cfg));
	*err = NULL;
	if (dir == NULL || *dir == '\0')
		dir = WEFT_KUBE_SA_DIR;
	if (host == NULL || *host == '\0' || port == NULL || *port == '\0')
		return kube_err(err, "not running in a pod "
		    "(KUBERNETES_SERVICE_HOST/_PORT unset): use --kubeconfig");
	if (strchr(host, ':') != NULL)
		r = asprintf(&cfg->server, "https://[%s]:%s", host, port);
	else
		r = asprintf(&cfg->server, "https://%s:%s", host, port);
	if (r == -1) {
		cfg->server = NULL;
		goto oom;
	}
	snprintf(path, sizeof(path), "%s/token", dir);
	if (access(path, R_OK) == -1) {
		kube_err(err, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if ((cfg->token_file = strdup(path)) == NULL)
		goto oom;
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	if (access(path, R_OK) == -1) {
		kube_err(err, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if ((cfg->ca_file = strdup(path)) == NULL)
		goto oom;
	snprintf(path, sizeof(path), "%s/namespace", dir);
	cfg->namespace = kube_read_trimmed(path);	/* optional */
	return 0;
oom:
	kube_err(err, "out of memory");
fail:
	weft_kube_config_clear(cfg);
	return -1;
}

/* The "name"d entry of a kubeconfig list (clusters, users, contexts), its
 * inner object (key). */
static struct json_object *
kubeconfig_find(struct json_object *root, const char *list, const char *name,
    const char *key)
{
	struct json_object *arr, *e, *n, *v;
	size_t i;

	if (!json_object_object_get_ex(root, list, &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return NULL;
	for (i = 0; i < json_object_array_length(arr); i++) {
		e = json_object_array_get_idx(arr, i);
		if (json_object_object_get_ex(e, "name", &n) &&
		    json_object_is_type(n, json_type_string) &&
		    strcmp(json_object_get_string(n), name) == 0 &&
		    json_object_object_get_ex(e, key, &v) &&
		    json_object_is_type(v, json_type_object))
			return v;
	}
	return NULL;
}

static const char *
kubeconfig_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    *json_object_get_string(v) == '\0')
		return NULL;
	return json_object_get_string(v);
}

/* path made absolute against dir (the kubeconfig's directory). */
static char *
kubeconfig_path(const char *dir, const char *path)
{
	char *p;

	if (path[0] == '/')
		return strdup(path);
	if (asprintf(&p, "%s/%s", dir, path) == -1)
		return NULL;
	return p;
}

/* The PEM of key-data (base64) or key (a file). */
static int
kubeconfig_pem(struct json_object *o, const char *dir, const char *key,
    const char *what, char **out, char **err)
{
	char datakey[64], *path;
	const char *v;

	*out = NULL;
	snprintf(datakey, sizeof(datakey), "%s-data", key);
	if ((v = kubeconfig_str(o, datakey)) != NULL) {
		if ((*out = kube_base64_decode(v)) == NULL)
			return kube_err(err, "%s: %s: not base64", what,
			    datakey);
		return 0;
	}
	if ((v = kubeconfig_str(o, key)) == NULL)
		return 0;
	if ((path = kubeconfig_path(dir, v)) == NULL)
		return kube_err(err, "out of memory");
	if ((*out = kube_read_file(path, NULL)) == NULL) {
		kube_err(err, "%s: %s %s: %s", what, key, path,
		    strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

int
weft_kube_config_load(const char *path, const char *context,
    struct weft_kube_config *cfg, char **err)
{
	struct weft_manifest_docs docs = { NULL, 0 };
	struct weft_errors errs = { NULL, 0, 0 };
	struct json_object *root, *ctx, *cluster, *user, *v;
	const char *cluster_name, *user_name, *s;
	char *dir = NULL, *slash;
	int rc = -1;

	memset(cfg, 0, sizeof(*cfg));
	*err = NULL;
	if (weft_manifest_load_file(path, path, &docs, &errs) == -1 ||
	    docs.n == 0) {
		kube_err(err, "%s", errs.n > 0 ? errs.msgs[0] :
		    "kubeconfig: empty file");
		goto done;
	}
	root = docs.docs[0].obj;
	if ((dir = strdup(path)) == NULL)
		goto oom;
	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	else
		strcpy(dir, ".");
	if (context == NULL &&
	    (context = kubeconfig_str(root, "current-context")) == NULL) {
		kube_err(err, "%s: no current-context (use --context)", path);
		goto done;
	}
	if ((ctx = kubeconfig_find(root, "contexts", context,
	    "context")) == NULL) {
		kube_err(err, "%s: no context \"%s\"", path, context);
		goto done;
	}
	if ((cluster_name = kubeconfig_str(ctx, "cluster")) == NULL ||
	    (cluster = kubeconfig_find(root, "clusters", cluster_name,
	    "cluster")) == NULL) {
		kube_err(err, "%s: context \"%s\": no such cluster", path,
		    context);
		goto done;
	}
	if ((s = kubeconfig_str(cluster, "server")) == NULL) {
		kube_err(err, "%s: cluster \"%s\": no server", path,
		    cluster_name);
		goto done;
	}
	if ((cfg->server = strdup(s)) == NULL)
		goto oom;
	if ((s = kubeconfig_str(ctx, "namespace")) != NULL &&
	    (cfg->namespace = strdup(s)) == NULL)
		goto oom;
	if (json_object_object_get_ex(cluster, "insecure-skip-tls-verify",
	    &v))
		cfg->insecure = json_object_get_boolean(v) ||
		    (json_object_is_type(v, json_type_string) &&
		    strcmp(json_object_get_string(v), "true") == 0);
	if ((s = kubeconfig_str(cluster, "tls-server-name")) != NULL &&
	    (cfg->tls_server_name = strdup(s)) == NULL)
		goto oom;
	if (kubeconfig_pem(cluster, dir, "certificate-authority", path,
	    &cfg->ca_pem, err) == -1)
		goto done;
	user = NULL;
	if ((user_name = kubeconfig_str(ctx, "user")) != NULL &&
	    (user = kubeconfig_find(root, "users", user_name,
	    "user")) == NULL) {
		kube_err(err, "%s: context \"%s\": no user \"%s\"", path,
		    context, user_name);
		goto done;
	}
	if (user != NULL) {
		if (json_object_object_get_ex(user, "exec", &v) ||
		    json_object_object_get_ex(user, "auth-provider", &v)) {
			kube_err(err, "%s: user \"%s\": exec and auth-provider "
			    "credentials are not supported (use a token, a "
			    "tokenFile or a client certificate)", path,
			    user_name);
			goto done;
		}
		if ((s = kubeconfig_str(user, "token")) != NULL &&
		    (cfg->token = strdup(s)) == NULL)
			goto oom;
		if ((s = kubeconfig_str(user, "tokenFile")) != NULL &&
		    (cfg->token_file = kubeconfig_path(dir, s)) == NULL)
			goto oom;
		if (kubeconfig_pem(user, dir, "client-certificate", path,
		    &cfg->cert_pem, err) == -1 ||
		    kubeconfig_pem(user, dir, "client-key", path,
		    &cfg->key_pem, err) == -1)
			goto done;
		if ((cfg->cert_pem == NULL) != (cfg->key_pem == NULL)) {
			kube_err(err, "%s: user \"%s\": client-certificate and "
			    "client-key go together", path, user_name);
			goto done;
		}
	}
	rc = 0;
	goto done;
oom:
	kube_err(err, "out of memory");
done:
	if (rc == -1)
		weft_kube_config_clear(cfg);
	free(dir);
	weft_manifest_docs_clear(&docs);
	weft_errors_clear(&errs);
	return rc;
}

/* --- the client ------------------------------------------------------------------ */

static const char *
kube_ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (e == 0)
		snprintf(buf, len, "out of memory");
	else
		ERR_error_string_n(e, buf, len);
	return buf;
}

/* Every certificate of a PEM text into the context's trust store. */
static int
kube_add_ca_pem(SSL_CTX *ctx, const char *pem)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	BIO *bio;
	X509 *x;
	int n = 0;

	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL)
		return -1;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	ERR_clear_error();
	BIO_free(bio);
	return n > 0 ? 0 : -1;
}

static int
kube_client_cert(SSL_CTX *ctx, const char *cert_pem, const char *key_pem)
{
	BIO *bio;
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	int rc = -1;

	if ((bio = BIO_new_mem_buf(cert_pem, -1)) != NULL) {
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if ((bio = BIO_new_mem_buf(key_pem, -1)) != NULL) {
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if (x != NULL && key != NULL &&
	    SSL_CTX_use_certificate(ctx, x) == 1 &&
	    SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
	    SSL_CTX_check_private_key(ctx) == 1)
		rc = 0;
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

static SSL_CTX *
kube_ssl_ctx(const struct weft_kube_config *cfg, char **err)
{
	SSL_CTX *ctx;
	char buf[256];

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		kube_err(err, "TLS: %s", kube_ssl_error(buf, sizeof(buf)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* libevent 2.1 sends no close_notify and the API server may close
	 * without one: an EOF is an EOF (feasibility §4) */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION);
	if (cfg->insecure) {
		log_warnx("kubernetes: insecure-skip-tls-verify: the API "
		    "server's certificate is not checked");
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	} else {
		if (cfg->ca_file != NULL) {
			if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file,
			    NULL) != 1) {
				kube_err(err, "CA bundle %s: %s", cfg->ca_file,
				    kube_ssl_error(buf, sizeof(buf)));
				SSL_CTX_free(ctx);
				return NULL;
			}
		} else if (cfg->ca_pem != NULL) {
			if (kube_add_ca_pem(ctx, cfg->ca_pem) == -1) {
				kube_err(err, "certificate-authority: no "
				    "certificate in it");
				SSL_CTX_free(ctx);
				return NULL;
			}
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			kube_err(err, "TLS: no CA bundle");
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (cfg->cert_pem != NULL && kube_client_cert(ctx, cfg->cert_pem,
	    cfg->key_pem) == -1) {
		kube_err(err, "client certificate: %s",
		    kube_ssl_error(buf, sizeof(buf)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Re-read the token file when it changed: kubelet replaces projected
 * tokens well before they expire.  A file that cannot be read keeps the
 * token in hand. */
static void
kube_token_refresh(struct weft_kube *k)
{
	struct stat st;
	char *t;

	if (k->token_file == NULL)
		return;
	if (stat(k->token_file, &st) == -1) {
		log_warn("kubernetes: token file %s", k->token_file);
		return;
	}
	if (k->token != NULL && st.st_mtim.tv_sec == k->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == k->token_mtime.tv_nsec &&
	    st.st_size == k->token_size)
		return;
	if ((t = kube_read_trimmed(k->token_file)) == NULL) {
		log_warn("kubernetes: token file %s", k->token_file);
		return;
	}
	if (k->token != NULL) {
		explicit_bzero(k->token, strlen(k->token));
		log_debug("kubernetes: token file %s changed; re-read",
		    k->token_file);
	}
	free(k->token);
	k->token = t;
	k->token_mtime = st.st_mtim;
	k->token_size = st.st_size;
}

struct weft_kube *
weft_kube_new(struct event_base *base, const struct weft_kube_config *cfg,
    char **err)
{
	struct weft_kube *k;
	struct evhttp_uri *u = NULL;
	const char *scheme, *host, *path;
	struct in6_addr a6;
	struct in_addr a4;
	size_t hl;
	int port;

	*err = NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		kube_err(err, "out of memory");
		return NULL;
	}
	TAILQ_INIT(&k->reqs);
	k->base = base;
	if ((u = evhttp_uri_parse(cfg->server)) == NULL ||
	    (scheme = evhttp_uri_get_scheme(u)) == NULL ||
	    (host = evhttp_uri_get_host(u)) == NULL || *host == '\0' ||
	    (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)) {
		kube_err(err, "server %s: expected https://HOST[:PORT]",
		    cfg->server);
		goto fail;
	}
	port = evhttp_uri_get_port(u);
	if (port <= 0)
		port = strcmp(scheme, "https") == 0 ? 443 : 80;
	k->port = (uint16_t)port;
	hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
		k->host = strndup(host + 1, hl - 2);
	else
		k->host = strdup(host);
	path = evhttp_uri_get_path(u);
	if (path == NULL)
		path = "";
	k->prefix = strndup(path, strlen(path) - (strlen(path) > 0 &&
	    path[strlen(path) - 1] == '/'));
	k->server = strdup(cfg->server);
	k->sni = strdup(cfg->tls_server_name ? cfg->tls_server_name :
	    k->host ? k->host : "");
	if (k->host == NULL || k->prefix == NULL || k->server == NULL ||
	    k->sni == NULL) {
		kube_err(err, "out of memory");
		goto fail;
	}
	k->host_is_ip = inet_pton(AF_INET, k->host, &a4) == 1 ||
	    inet_pton(AF_INET6, k->host, &a6) == 1;
	if (cfg->namespace != NULL &&
	    (k->namespace = strdup(cfg->namespace)) == NULL) {
		kube_err(err, "out of memory");
		goto fail;
	}
	if (cfg->token != NULL && (k->token = strdup(cfg->token)) == NULL) {
		kube_err(err, "out of memory");
		goto fail;
	}
	if (cfg->token_file != NULL) {
		if ((k->token_file = strdup(cfg->token_file)) == NULL) {
			kube_err(err, "out of memory");
			goto fail;
		}
		free(k->token);
		k->token = NULL;
		if ((k->token = kube_read_trimmed(k->token_file)) == NULL) {
			kube_err(err, "token file %s: %s", k->token_file,
			    strerror(errno));
			goto fail;
		}
		{
			struct stat st;

			if (stat(k->token_file, &st) == 0) {
				k->token_mtime = st.st_mtim;
				k->token_size = st.st_size;
			}
		}
	}
	if (strcmp(scheme, "https") == 0 &&
	    (k->ssl_ctx = kube_ssl_ctx(cfg, err)) == NULL)
		goto fail;
	evhttp_uri_free(u);
	return k;
fail:
	if (u != NULL)
		evhttp_uri_free(u);
	weft_kube_free(k);
	return NULL;
}

const char *
weft_kube_server(const struct weft_kube *k)
{
	return k->server;
}

const char *
weft_kube_namespace(const struct weft_kube *k)
{
	return k->namespace;
}

/* --- requests ------------------------------------------------------------------- */

static void
kube_req_free(struct weft_kube_req *r)
{
	TAILQ_REMOVE(&r->k->reqs, r, entry);
	if (r->bev != NULL)
		bufferevent_free(r->bev);
	if (r->ev_done != NULL)
		event_free(r->ev_done);
	if (r->body != NULL)
		evbuffer_free(r->body);
	if (r->tok != NULL)
		json_tokener_free(r->tok);
	free(r->path);
	free(r);
}

void
weft_kube_cancel(struct weft_kube_req *r)
{
	if (r == NULL)
		return;
	if (r->busy > 0) {
		/* freed when the callback returns */
		r->cancelled = true;
		return;
	}
	kube_req_free(r);
}

void
weft_kube_free(struct weft_kube *k)
{
	if (k == NULL)
		return;
	while (!TAILQ_EMPTY(&k->reqs))
		kube_req_free(TAILQ_FIRST(&k->reqs));
	if (k->dns != NULL)
		evdns_base_free(k->dns, 0);
	SSL_CTX_free(k->ssl_ctx);
	free(k->server);
	free(k->host);
	free(k->prefix);
	free(k->sni);
	if (k->token != NULL)
		explicit_bzero(k->token, strlen(k->token));
	free(k->token);
	free(k->token_file);
	free(k->namespace);
	free(k);
}

/* Decide the result and close the connection; the callback runs from
 * ev_done.  error NULL: a complete response. */
static void
kube_req_finish(struct weft_kube_req *r, const char *error)
{
	const struct timeval now = { 0, 0 };

	if (r->finished)
		return;
	r->finished = true;
	if (error != NULL) {
		snprintf(r->error, sizeof(r->error), "%s", error);
		r->status = 0;
	}
	if (r->bev != NULL) {
		bufferevent_free(r->bev);
		r->bev = NULL;
	}
	evtimer_add(r->ev_done, &now);
}

static void
kube_req_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_kube_req *r = arg;
	struct weft_kube_resp resp;
	struct json_object *body = NULL;
	struct json_tokener *tok;
	size_t len;

	memset(&resp, 0, sizeof(resp));
	resp.status = r->status;
	if (r->error[0] != '\0')
		resp.error = r->error;
	else if (r->body != NULL && (len = evbuffer_get_length(r->body)) > 0) {
		const char *p = (const char *)evbuffer_pullup(r->body, -1);

		if (p != NULL &&
		    (tok = json_tokener_new_ex(KUBE_JSON_DEPTH)) != NULL) {
			body = json_tokener_parse_ex(tok, p, (int)len);
			if (json_tokener_get_error(tok) != json_tokener_success) {
				json_object_put(body);
				body = NULL;
			}
			json_tokener_free(tok);
		}
		evbuffer_free(r->body);
		r->body = NULL;
		if (body == NULL && r->status == 200) {
			snprintf(r->error, sizeof(r->error),
			    "%s %s: the response is not JSON", r->method,
			    r->path);
			resp.error = r->error;
			resp.status = 0;
		}
	}
	resp.body = body;
	log_debug("kubernetes: %s %s -> %d%s%s", r->method, r->path,
	    resp.status, resp.error ? ": " : "", resp.error ? resp.error : "");
	r->busy++;
	r->done(&resp, r->arg);
	r->busy--;
	json_object_put(body);
	kube_req_free(r);
}

/* --- response parsing (llhttp) ------------------------------------------------- */

static int
kube_on_headers_complete(llhttp_t *p)
{
	struct weft_kube_req *r = p->data;

	r->status = p->status_code;
	r->streaming = r->status == 200 && r->on_event != NULL;
	if (r->streaming &&
	    (r->tok = json_tokener_new_ex(KUBE_JSON_DEPTH)) == NULL)
		return -1;
	return 0;
}

/* Feed watch bytes to the tokener; every complete value goes to on_event. */
static int
kube_stream(struct weft_kube_req *r, const char *at, size_t len)
{
	struct json_object *o;
	enum json_tokener_error e;
	size_t used;

	while (len > 0) {
		/* white space between events: the tokener would wait on it */
		if (r->event_bytes == 0 && (*at == '\n' || *at == '\r' ||
		    *at == ' ' || *at == '\t')) {
			at++;
			len--;
			continue;
		}
		o = json_tokener_parse_ex(r->tok, at, (int)(len > INT_MAX ?
		    INT_MAX : len));
		e = json_tokener_get_error(r->tok);
		if (e == json_tokener_continue) {
			r->event_bytes += len;
			if (r->event_bytes > KUBE_MAX_EVENT) {
				snprintf(r->error, sizeof(r->error),
				    "a watch event over %u bytes",
				    KUBE_MAX_EVENT);
				return -1;
			}
			return 0;
		}
		if (e != json_tokener_success) {
			snprintf(r->error, sizeof(r->error), "watch stream: "
			    "%s", json_tokener_error_desc(e));
			return -1;
		}
		used = json_tokener_get_parse_end(r->tok);
		json_tokener_reset(r->tok);
		r->event_bytes = 0;
		r->busy++;
		r->on_event(o, r->arg);
		r->busy--;
		json_object_put(o);
		if (r->cancelled)
			return -1;
		at += used;
		len -= used;
	}
	return 0;
}

static int
kube_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct weft_kube_req *r = p->data;

	if (r->streaming)
		return kube_stream(r, at, len);
	if (evbuffer_get_length(r->body) + len > KUBE_MAX_BODY) {
		snprintf(r->error, sizeof(r->error), "a response over %u "
		    "bytes", KUBE_MAX_BODY);
		return -1;
	}
	return evbuffer_add(r->body, at, len);
}

static int
kube_on_message_complete(llhttp_t *p)
{
	struct weft_kube_req *r = p->data;

	r->complete = true;
	return HPE_PAUSED;
}

static const llhttp_settings_t kube_settings = {
	.on_headers_complete = kube_on_headers_complete,
	.on_body = kube_on_body,
	.on_message_complete = kube_on_message_complete,
};

/* Runs the parser over what arrived; finishes the request when the
 * response is complete or broken.  Returns -1 when r was freed. */
static int
kube_parse(struct weft_kube_req *r, const char *data, size_t len, bool eof)
{
	llhttp_errno_t e;
	char msg[256];

	if (eof)
		e = llhttp_finish(&r->parser);
	else
		e = llhttp_execute(&r->parser, data, len);
	if (r->cancelled) {
		kube_req_free(r);
		return -1;
	}
	if (r->complete) {
		if (r->streaming && r->tok != NULL && r->event_bytes > 0) {
			kube_req_finish(r, "watch stream ended inside an "
			    "event");
			return 0;
		}
		kube_req_finish(r, NULL);
		return 0;
	}
	if (e == HPE_OK && !eof)
		return 0;
	if (r->error[0] != '\0')
		snprintf(msg, sizeof(msg), "%s", r->error);
	else if (e == HPE_OK || eof)
		snprintf(msg, sizeof(msg), "connection closed before the "
		    "response ended");
	else
		snprintf(msg, sizeof(msg), "bad HTTP response: %s (%s)",
		    llhttp_errno_name(e), llhttp_get_error_reason(&r->parser));
	kube_req_finish(r, msg);
	return 0;
}

static void
kube_readcb(struct bufferevent *bev, void *arg)
{
	struct weft_kube_req *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[8];
	int n, i;

	while (!r->finished && evbuffer_get_length(in) > 0) {
		r->got_bytes = true;
		n = evbuffer_peek(in, -1, NULL, v, 8);
		if (n > 8)
			n = 8;
		for (i = 0; i < n && !r->finished; i++) {
			if (kube_parse(r, v[i].iov_base, v[i].iov_len,
			    false) == -1)
				return;
		}
		if (r->finished)
			return;
		for (i = 0; i < n; i++)
			evbuffer_drain(in, v[i].iov_len);
	}
}

static void
kube_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct weft_kube_req *r = arg;
	char msg[256], ebuf[160];
	int err = EVUTIL_SOCKET_ERROR();
	unsigned long e;
	SSL *ssl;
	long vr;

	if (what & BEV_EVENT_CONNECTED)
		return;
	/* bytes that came with the EOF */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
		kube_readcb(bev, arg);
		if (r->finished)
			return;
	}
	if ((what & BEV_EVENT_EOF) && r->got_bytes) {
		(void)kube_parse(r, NULL, 0, true);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		kube_req_finish(r, "timed out");
		return;
	}
	snprintf(msg, sizeof(msg), "connection failed");
	if (bufferevent_socket_get_dns_error(bev) != 0)
		snprintf(msg, sizeof(msg), "%s: %s", r->k->host,
		    evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
	else if ((ssl = bufferevent_openssl_get_ssl(bev)) != NULL &&
	    (vr = SSL_get_verify_result(ssl)) != X509_V_OK)
		snprintf(msg, sizeof(msg), "TLS: certificate verify failed: "
		    "%s", X509_verify_cert_error_string(vr));
	else {
		bool tls = false;

		while ((e = bufferevent_get_openssl_error(bev)) != 0) {
			if (ERR_GET_LIB(e) == 0)
				continue;
			ERR_error_string_n(e, ebuf, sizeof(ebuf));
			snprintf(msg, sizeof(msg), "TLS: %s", ebuf);
			tls = true;
			break;
		}
		if (!tls && err != 0)
			snprintf(msg, sizeof(msg), "connection failed: %s",
			    strerror(err));
		else if (!tls && (what & BEV_EVENT_EOF))
			snprintf(msg, sizeof(msg), "connection closed before "
			    "any response");
	}
	kube_req_finish(r, msg);
}

static struct bufferevent *
kube_connect(struct weft_kube *k)
{
	struct bufferevent *bev;
	SSL *ssl;

	if (k->ssl_ctx == NULL)
		return bufferevent_socket_new(k->base, -1,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if ((ssl = SSL_new(k->ssl_ctx)) == NULL)
		return NULL;
	if (k->host_is_ip && strcmp(k->sni, k->host) == 0) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    k->host) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else if (SSL_set1_host(ssl, k->sni) != 1 ||
	    SSL_set_tlsext_host_name(ssl, k->sni) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	/* on failure libevent has freed ssl */
	if ((bev = bufferevent_openssl_socket_new(k->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL)
		return NULL;
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

struct weft_kube_req *
weft_kube_request(struct weft_kube *k, const char *method, const char *path,
    const char *content_type, const char *body, int timeout,
    weft_kube_event_cb on_event, weft_kube_done_cb done, void *arg)
{
	struct weft_kube_req *r;
	struct sockaddr_storage ss;
	struct timeval tv = { timeout, 0 };
	int sslen = sizeof(ss);
	char hostport[300];

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->k = k;
	r->on_event = on_event;
	r->done = done;
	r->arg = arg;
	snprintf(r->method, sizeof(r->method), "%s", method);
	TAILQ_INSERT_TAIL(&k->reqs, r, entry);
	llhttp_init(&r->parser, HTTP_RESPONSE, &kube_settings);
	r->parser.data = r;
	if ((r->path = strdup(path)) == NULL ||
	    (r->body = evbuffer_new()) == NULL ||
	    (r->ev_done = evtimer_new(k->base, kube_req_done_cb, r)) == NULL ||
	    (r->bev = kube_connect(k)) == NULL)
		goto fail;
	kube_token_refresh(k);
	if (strchr(k->host, ':') != NULL)
		snprintf(hostport, sizeof(hostport), "[%s]:%u", k->host,
		    k->port);
	else
		snprintf(hostport, sizeof(hostport), "%s:%u", k->host, k->port);
	{
		struct evbuffer *out = bufferevent_get_output(r->bev);

		evbuffer_add_printf(out, "%s %s%s HTTP/1.1\r\nHost: %s\r\n"
		    "User-Agent: weft-controller\r\n"
		    "Accept: application/json\r\nConnection: close\r\n",
		    method, k->prefix, path, hostport);
		if (k->token != NULL)
			evbuffer_add_printf(out, "Authorization: Bearer %s\r\n",
			    k->token);
		if (body != NULL)
			evbuffer_add_printf(out, "Content-Type: %s\r\n"
			    "Content-Length: %zu\r\n", content_type ?
			    content_type : "application/json", strlen(body));
		evbuffer_add(out, "\r\n", 2);
		if (body != NULL)
			evbuffer_add(out, body, strlen(body));
	}
	bufferevent_setcb(r->bev, kube_readcb, NULL, kube_eventcb, r);
	bufferevent_set_timeouts(r->bev, &tv, &tv);
	if (bufferevent_enable(r->bev, EV_READ | EV_WRITE) == -1)
		goto fail;
	if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)&ss,
	    &sslen) == 0) {
		/* a failure is reported through the event callback */
		(void)bufferevent_socket_connect(r->bev,
		    (struct sockaddr *)&ss, sslen);
		return r;
	}
	if (k->dns == NULL && (k->dns = evdns_base_new(k->base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		goto fail;
	(void)bufferevent_socket_connect_hostname(r->bev, k->dns, AF_UNSPEC,
	    k->host, k->port);
	return r;
fail:
	kube_req_free(r);
	return NULL;
}

const char *
weft_kube_resp_why(const struct weft_kube_resp *resp, char *buf, size_t len)
{
	struct json_object *m;

	if (resp->error != NULL)
		snprintf(buf, len, "%s", resp->error);
	else if (resp->body != NULL &&
	    json_object_object_get_ex(resp->body, "message", &m) &&
	    json_object_is_type(m, json_type_string))
		snprintf(buf, len, "HTTP %d: %s", resp->status,
		    json_object_get_string(m));
	else
		snprintf(buf, len, "HTTP %d", resp->status);
	return buf;
}

/* --- TokenReview ------------------------------------------------------------------ */

struct kube_review {
	weft_kube_review_cb cb;
	void		*arg;
	char		*audience;	/* owned; may be NULL */
};

/* The first string of extra[key], or NULL. */
static const char *
review_extra(struct json_object *user, const char *key)
{
	struct json_object *extra, *v;

	if (!json_object_object_get_ex(user, "extra", &extra) ||
	    !json_object_object_get_ex(extra, key, &v) ||
	    !json_object_is_type(v, json_type_array) ||
	    json_object_array_length(v) < 1 ||
	    !json_object_is_type(json_object_array_get_idx(v, 0),
	    json_type_string))
		return NULL;
	return json_object_get_string(json_object_array_get_idx(v, 0));
}

static void
review_done(const struct weft_kube_resp *resp, void *arg)
{
	struct kube_review *kr = arg;
	struct weft_kube_review rv;
	struct json_object *status, *user, *v, *auds;
	char why[300];
	size_t i;

	memset(&rv, 0, sizeof(rv));
	if (resp->status != 200 && resp->status != 201) {
		rv.failed = true;
		rv.error = weft_kube_resp_why(resp, why, sizeof(why));
		goto out;
	}
	if (!json_object_object_get_ex(resp->body, "status", &status) ||
	    !json_object_is_type(status, json_type_object)) {
		rv.failed = true;
		rv.error = "TokenReview: no status in the answer";
		goto out;
	}
	if (json_object_object_get_ex(status, "error", &v) &&
	    json_object_is_type(v, json_type_string))
		rv.error = json_object_get_string(v);
	if (!json_object_object_get_ex(status, "authenticated", &v) ||
	    !json_object_get_boolean(v))
		goto out;
	if (kr->audience != NULL) {
		bool ok = false;

		if (json_object_object_get_ex(status, "audiences", &auds) &&
		    json_object_is_type(auds, json_type_array))
			for (i = 0; i < json_object_array_length(auds); i++)
				if (strcmp(json_object_get_string(
				    json_object_array_get_idx(auds, i)),
				    kr->audience) == 0)
					ok = true;
		if (!ok) {
			rv.error = "the token is not meant for this audience";
			goto out;
		}
	}
	if (!json_object_object_get_ex(status, "user", &user) ||
	    !json_object_object_get_ex(user, "username", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		rv.error = "TokenReview: no user in the answer";
		goto out;
	}
	rv.authenticated = true;
	rv.username = json_object_get_string(v);
	rv.pod_name = review_extra(user, "authentication.kubernetes.io/pod-name");
	rv.pod_uid = review_extra(user, "authentication.kubernetes.io/pod-uid");
out:
	kr->cb(&rv, kr->arg);
	free(kr->audience);
	free(kr);
}

struct weft_kube_req *
weft_kube_token_review(struct weft_kube *k, const char *token,
    const char *audience, weft_kube_review_cb cb, void *arg)
{
	struct json_object *o, *spec, *auds;
	struct kube_review *kr;
	struct weft_kube_req *r;
	const char *body;

	if ((kr = calloc(1, sizeof(*kr))) == NULL)
		return NULL;
	kr->cb = cb;
	kr->arg = arg;
	if (audience != NULL && (kr->audience = strdup(audience)) == NULL) {
		free(kr);
		return NULL;
	}
	o = json_object_new_object();
	spec = json_object_new_object();
	if (o == NULL || spec == NULL) {
		json_object_put(o);
		json_object_put(spec);
		free(kr->audience);
		free(kr);
		return NULL;
	}
	json_object_object_add(o, "apiVersion",
	    json_object_new_string("authentication.k8s.io/v1"));
	json_object_object_add(o, "kind", json_object_new_string("TokenReview"));
	json_object_object_add(spec, "token", json_object_new_string(token));
	if (audience != NULL && (auds = json_object_new_array()) != NULL) {
		json_object_array_add(auds, json_object_new_string(audience));
		json_object_object_add(spec, "audiences", auds);
	}
	json_object_object_add(o, "spec", spec);
	body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	r = weft_kube_request(k, "POST",
	    "/apis/authentication.k8s.io/v1/tokenreviews", "application/json",
	    body, 10, NULL, review_done, kr);
	/* the serialised token lives in o's buffer: wipe it */
	explicit_bzero((char *)(uintptr_t)body, strlen(body));
	json_object_put(o);
	if (r == NULL) {
		free(kr->audience);
		free(kr);
	}
	return r;
}

/* --- versions ----------------------------------------------------------------- */

/* v<major>[(alpha|beta)<minor>]: 1 with the parts, 0 if not of that form. */
static int
kube_version_parse(const char *v, long *major, int *level, long *minor)
{
	char *end;

	if (v[0] != 'v' || v[1] < '1' || v[1] > '9')
		return 0;
	*major = strtol(v + 1, &end, 10);
	*minor = 0;
	if (*end == '\0') {
		*level = 3;
		return 1;
	}
	if (strncmp(end, "alpha", 5) == 0) {
		*level = 1;
		end += 5;
	} else if (strncmp(end, "beta", 4) == 0) {
		*level = 2;
		end += 4;
	} else
		return 0;
	if (*end < '1' || *end > '9')
		return 0;
	*minor = strtol(end, &end, 10);
	return *end == '\0';
}

int
weft_kube_version_cmp(const char *a, const char *b)
{
	long ma, mb, na, nb;
	int la, lb, ka, kb;

	ka = kube_version_parse(a, &ma, &la, &na);
	kb = kube_version_parse(b, &mb, &lb, &nb);
	if (!ka && !kb)
		return -strcmp(a, b);	/* alphabetical: first is greater */
	if (ka != kb)
		return ka - kb;
	if (la != lb)
		return la - lb;
	if (ma != mb)
		return ma < mb ? -1 : 1;
	if (na != nb)
		return na < nb ? -1 : 1;
	return 0;
}
