/* `weft ctl`: the operator's view of a running mesh.
 *
 *   status        the controller's generation and every node's applied one
 *   wait          until every Node has applied the current generation
 *   check FILE... validate manifests offline, as the controller would
 *
 * The HTTP client is deliberately tiny and blocking (one request per
 * connection, Connection: close): ctl makes a handful of requests and
 * exits. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "weft/controller.h"
#include "weft/log.h"

#define CTL_IO_TIMEOUT_MS	10000
#define CTL_MAX_RESPONSE	(8u << 20)
#define CTL_WAIT_POLL_MS	200

struct ctl {
	char		*host;		/* owned */
	char		*port;		/* owned */
	char		*token;		/* owned; NULL: none */
};

struct ctl_response {
	int		 status;
	char		*body;		/* owned, NUL-terminated */
	size_t		 body_len;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "http://host[:port][/]" into c.  Returns 0, or -1 with *err. */
static int
ctl_parse_url(struct ctl *c, const char *url, char **err)
{
	const char *h, *end, *colon;

	if (strncmp(url, "http://", 7) != 0) {
		if (asprintf(err, "controller URL %s: only http:// is supported",
		    url) == -1)
			*err = NULL;
		return -1;
	}
	h = url + 7;
	end = h + strcspn(h, "/");
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (rb == NULL)
			goto bad;
		c->host = strndup(h + 1, (size_t)(rb - h - 1));
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		c->host = strndup(h, (size_t)((colon ? colon : end) - h));
	}
	if (colon != NULL)
		c->port = strndup(colon + 1, (size_t)(end - colon - 1));
	else
		c->port = strdup("80");
	if (c->host == NULL || c->port == NULL || c->host[0] == '\0' ||
	    c->port[0] == '\0')
		goto bad;
	return 0;
bad:
	if (asprintf(err, "controller URL %s: expected http://HOST:PORT",
	    url) == -1)
		*err = NULL;
	return -1;
}

static int
ctl_read_token(struct ctl *c, const char *path, char **err)
{
	FILE *f;
	char *line = NULL, *tok, *save;
	size_t cap = 0;

	if ((f = fopen(path, "re")) == NULL) {
		if (asprintf(err, "%s: %s", path, strerror(errno)) == -1)
			*err = NULL;
		return -1;
	}
	while (getline(&line, &cap, f) != -1) {
		if (line[0] == '#')
			continue;
		if ((tok = strtok_r(line, " \t\r\n", &save)) != NULL) {
			c->token = strdup(tok);
			break;
		}
	}
	free(line);
	fclose(f);
	if (c->token == NULL) {
		if (asprintf(err, "%s: no token", path) == -1)
			*err = NULL;
		return -1;
	}
	return 0;
}

static int
ctl_connect(struct ctl *c, char **err)
{
	struct addrinfo hints, *res, *ai;
	struct pollfd pfd;
	socklen_t len;
	int fd = -1, r, soerr = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(c->host, c->port, &hints, &res)) != 0) {
		if (asprintf(err, "%s:%s: %s", c->host, c->port,
		    gai_strerror(r)) == -1)
			*err = NULL;
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd == -1)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			len = sizeof(soerr);
			if (poll(&pfd, 1, CTL_IO_TIMEOUT_MS) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
			    &len) == 0 && soerr == 0)
				break;
			errno = soerr ? soerr : ETIMEDOUT;
		}
		soerr = errno;
		close(fd);
		fd = -1;
		errno = soerr;
	}
	freeaddrinfo(res);
	if (fd == -1 && asprintf(err, "connect to %s:%s: %s", c->host,
	    c->port, strerror(errno)) == -1)
		*err = NULL;
	return fd;
}

static int
ctl_write_all(int fd, const char *buf, size_t len)
{
	struct pollfd pfd = { fd, POLLOUT, 0 };
	ssize_t r;

	while (len > 0) {
		r = send(fd, buf, len, MSG_NOSIGNAL);
		if (r == -1 && errno == EAGAIN) {
			if (poll(&pfd, 1, CTL_IO_TIMEOUT_MS) != 1) {
				errno = ETIMEDOUT;
				return -1;
			}
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		buf += r;
		len -= (size_t)r;
	}
	return 0;
}

/* GET path; the whole response read until the server closes. */
static int
ctl_get(struct ctl *c, const char *path, struct ctl_response *resp,
    char **err)
{
	struct pollfd pfd;
	char *req = NULL, *buf = NULL, *nb, *hdr_end, *p;
	size_t len = 0, cap = 0;
	ssize_t r;
	int fd, n;

	memset(resp, 0, sizeof(*resp));
	*err = NULL;
	if ((fd = ctl_connect(c, err)) == -1)
		return -1;
	n = asprintf(&req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
	    "User-Agent: weft-ctl/%s\r\n%s%s%sConnection: close\r\n\r\n",
	    path, c->host, c->port, PACKAGE_VERSION,
	    c->token ? "Authorization: Bearer " : "", c->token ? c->token : "",
	    c->token ? "\r\n" : "");
	if (n == -1) {
		req = NULL;
		errno = ENOMEM;
		goto syserr;
	}
	if (ctl_write_all(fd, req, (size_t)n) == -1)
		goto syserr;
	for (;;) {
		if (cap - len < 4096) {
			if (cap >= CTL_MAX_RESPONSE) {
				errno = EFBIG;
				goto syserr;
			}
			cap = cap ? cap * 2 : 16384;
			if ((nb = realloc(buf, cap + 1)) == NULL)
				goto syserr;
			buf = nb;
		}
		r = recv(fd, buf + len, cap - len, 0);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && errno == EAGAIN) {
			pfd.fd = fd;
			pfd.events = POLLIN;
			if (poll(&pfd, 1, CTL_IO_TIMEOUT_MS) != 1) {
				errno = ETIMEDOUT;
				goto syserr;
			}
			continue;
		}
		if (r == -1)
			goto syserr;
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	fd = -1;
	free(req);
	if (buf == NULL)
		goto bad;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*c %d", &resp->status) != 1 ||
	    (hdr_end = strstr(buf, "\r\n\r\n")) == NULL)
		goto bad;
	/* Content-Length bounds the body when present (no chunked: we
	 * speak Connection: close and evhttp then sends a length) */
	p = hdr_end + 4;
	resp->body_len = len - (size_t)(p - buf);
	memmove(buf, p, resp->body_len);
	buf[resp->body_len] = '\0';
	resp->body = buf;
	return 0;
bad:
	free(buf);
	if (asprintf(err, "%s:%s: malformed HTTP response", c->host,
	    c->port) == -1)
		*err = NULL;
	return -1;
syserr:
	if (asprintf(err, "%s:%s: %s", c->host, c->port,
	    strerror(errno)) == -1)
		*err = NULL;
	free(req);
	free(buf);
	if (fd != -1)
		close(fd);
	return -1;
}

/* GET /v1/status parsed.  Returns the root (caller puts) or NULL with *err. */
static struct json_object *
ctl_status_get(struct ctl *c, char **err)
{
	struct ctl_response resp;
	struct json_object *root, *v;

	if (ctl_get(c, "/v1/status", &resp, err) == -1)
		return NULL;
	if (resp.status != 200) {
		struct json_object *e = json_tokener_parse(resp.body);

		if (asprintf(err, "controller answered %d: %s", resp.status,
		    e != NULL && json_object_object_get_ex(e, "error", &v) ?
		    json_object_get_string(v) : resp.body) == -1)
			*err = NULL;
		json_object_put(e);
		free(resp.body);
		return NULL;
	}
	root = json_tokener_parse(resp.body);
	free(resp.body);
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "generation", NULL) ||
	    !json_object_object_get_ex(root, "nodes", &v) ||
	    !json_object_is_type(v, json_type_array)) {
		json_object_put(root);
		if (asprintf(err, "controller sent a malformed status") == -1)
			*err = NULL;
		return NULL;
	}
	return root;
}

static const char *
jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t
jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

static const char *
node_state(int64_t applied, int64_t gen)
{
	if (applied == 0)
		return "never";
	return applied == gen ? "current" : "behind";
}

static int
ctl_status(struct ctl *c, int argc, char **argv)
{
	struct json_object *root, *nodes, *errs, *n;
	size_t i, cnt, w = 4;
	int64_t gen;
	char *err;

	if (argc > 1) {
		fprintf(stderr, "usage: weft ctl status\n");
		return 2;
	}
	if ((root = ctl_status_get(c, &err)) == NULL) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		free(err);
		return 1;
	}
	gen = jint(root, "generation");
	json_object_object_get_ex(root, "nodes", &nodes);
	cnt = json_object_array_length(nodes);
	for (i = 0; i < cnt; i++) {
		const char *name = jstr(json_object_array_get_idx(nodes, i),
		    "name");

		if (name != NULL && strlen(name) > w)
			w = strlen(name);
	}
	printf("generation %" PRId64 "\n\n", gen);
	printf("%-*s  %-7s  %-7s  %s\n", (int)w, "NODE", "APPLIED", "STATE",
	    "LAST-SEEN");
	for (i = 0; i < cnt; i++) {
		const char *name, *seen;
		int64_t applied;
		char ap[24];

		n = json_object_array_get_idx(nodes, i);
		name = jstr(n, "name");
		seen = jstr(n, "last_seen");
		applied = jint(n, "applied");
		if (applied > 0)
			snprintf(ap, sizeof(ap), "%" PRId64, applied);
		else
			snprintf(ap, sizeof(ap), "-");
		printf("%-*s  %-7s  %-7s  %s\n", (int)w, name ? name : "?", ap,
		    node_state(applied, gen), seen ? seen : "-");
	}
	if (cnt == 0)
		printf("(no nodes)\n");
	if (json_object_object_get_ex(root, "errors", &errs) &&
	    json_object_is_type(errs, json_type_array) &&
	    json_object_array_length(errs) > 0) {
		printf("\nmanifest errors:\n");
		for (i = 0; i < json_object_array_length(errs); i++)
			printf("  %s\n", json_object_get_string(
			    json_object_array_get_idx(errs, i)));
	}
	json_object_put(root);
	return 0;
}

/* Who is behind, "" if nobody: "node2 (applied 3), node3 (never)". */
static int
ctl_behind(struct json_object *root, char *buf, size_t len)
{
	struct json_object *nodes, *n, *known;
	int64_t gen = jint(root, "generation"), applied;
	size_t i, off = 0;
	int behind = 0;

	buf[0] = '\0';
	json_object_object_get_ex(root, "nodes", &nodes);
	for (i = 0; i < json_object_array_length(nodes); i++) {
		n = json_object_array_get_idx(nodes, i);
		if (!json_object_object_get_ex(n, "known", &known) ||
		    !json_object_get_boolean(known))
			continue;
		applied = jint(n, "applied");
		if (applied == gen)
			continue;
		behind++;
		if (off < len) {
			int r;

			if (applied == 0)
				r = snprintf(buf + off, len - off, "%s%s (never)",
				    off ? ", " : "", jstr(n, "name"));
			else
				r = snprintf(buf + off, len - off,
				    "%s%s (applied %" PRId64 ")", off ? ", " : "",
				    jstr(n, "name"), applied);
			if (r > 0)
				off += (size_t)r;
		}
	}
	return behind;
}

static int
ctl_wait(struct ctl *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout",	required_argument, NULL, 't' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct json_object *root = NULL;
	char behind[1024], *err = NULL, *end;
	int64_t deadline, gen = 0;
	double timeout = 60;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			timeout = strtod(optarg, &end);
			if (*end != '\0' || timeout <= 0) {
				fprintf(stderr, "weft ctl wait: --timeout %s: "
				    "expected seconds\n", optarg);
				return 2;
			}
			break;
		case 'h':
			printf("usage: weft ctl wait [--timeout SECONDS]\n\n"
			    "Wait until every Node has applied the controller's "
			    "current generation (default timeout 60s).\n");
			return 0;
		default:
			fprintf(stderr, "usage: weft ctl wait [--timeout "
			    "SECONDS]\n");
			return 2;
		}
	}
	deadline = now_ms() + (int64_t)(timeout * 1000);
	snprintf(behind, sizeof(behind), "no answer yet");
	for (;;) {
		free(err);
		err = NULL;
		json_object_put(root);
		if ((root = ctl_status_get(c, &err)) != NULL) {
			gen = jint(root, "generation");
			if (ctl_behind(root, behind, sizeof(behind)) == 0) {
				printf("generation %" PRId64 " applied by every "
				    "node\n", gen);
				json_object_put(root);
				return 0;
			}
		}
		if (now_ms() >= deadline)
			break;
		usleep(CTL_WAIT_POLL_MS * 1000);
	}
	if (root == NULL)
		fprintf(stderr, "weft ctl wait: timed out after %gs: %s\n",
		    timeout, err ? err : "no status");
	else
		fprintf(stderr, "weft ctl wait: timed out after %gs: generation "
		    "%" PRId64 " not applied by %s\n", timeout, gen, behind);
	free(err);
	json_object_put(root);
	return 1;
}

static int
ctl_check(int argc, char **argv)
{
	struct weft_manifest_docs docs = { NULL, 0 };
	struct weft_errors errs = { NULL, 0, 0 };
	struct weft_model *m;
	size_t i;
	int a, rc;

	if (argc < 2) {
		fprintf(stderr, "usage: weft ctl check FILE...\n");
		return 2;
	}
	for (a = 1; a < argc; a++)
		(void)weft_manifest_load_file(argv[a], argv[a], &docs, &errs);
	if ((m = weft_model_build(&docs, &errs)) == NULL)
		weft_errors_add(&errs, "out of memory");
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	rc = errs.n == 0 ? 0 : 1;
	if (rc == 0)
		printf("configuration OK\n");
	weft_model_free(m);
	weft_manifest_docs_clear(&docs);
	weft_errors_clear(&errs);
	return rc;
}

static void
ctl_usage(FILE *f)
{
	fprintf(f,
	    "usage: weft ctl [--controller URL] [--token-file FILE] COMMAND\n"
	    "\n"
	    "  --controller URL   controller address (default %s,\n"
	    "                     env WEFT_CONTROLLER)\n"
	    "  --token-file FILE  file holding an admin token (env\n"
	    "                     WEFT_TOKEN_FILE)\n"
	    "\n"
	    "commands:\n"
	    "  status                     generation and each node's applied one\n"
	    "  wait [--timeout SECONDS]   until every node applied the current\n"
	    "                             generation (exit 1 on timeout)\n"
	    "  check FILE...              validate manifests offline\n",
	    WEFT_CONTROLLER_URL);
}

int
weft_ctl_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "controller",	required_argument, NULL, 'c' },
		{ "token-file",	required_argument, NULL, 't' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ctl c;
	const char *url, *token_file, *cmd;
	char *err = NULL;
	int ch, rc = 2;

	memset(&c, 0, sizeof(c));
	weft_log_init("weft-ctl", WEFT_LOG_WARN);
	url = getenv("WEFT_CONTROLLER");
	token_file = getenv("WEFT_TOKEN_FILE");
	if (url == NULL || url[0] == '\0')
		url = WEFT_CONTROLLER_URL;
	optind = 1;
	/* '+': stop at the subcommand, whose options are its own */
	while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			url = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		default:
			ctl_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		ctl_usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "check") == 0)
		return ctl_check(argc, argv);
	if (strcmp(cmd, "status") != 0 && strcmp(cmd, "wait") != 0) {
		fprintf(stderr, "weft ctl: unknown command '%s'\n\n", cmd);
		ctl_usage(stderr);
		return 2;
	}
	if (ctl_parse_url(&c, url, &err) == -1 || (token_file != NULL &&
	    token_file[0] != '\0' && ctl_read_token(&c, token_file,
	    &err) == -1)) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		rc = 1;
		goto done;
	}
	if (strcmp(cmd, "status") == 0)
		rc = ctl_status(&c, argc, argv);
	else
		rc = ctl_wait(&c, argc, argv);
done:
	free(err);
	free(c.host);
	free(c.port);
	if (c.token != NULL)
		explicit_bzero(c.token, strlen(c.token));
	free(c.token);
	return rc;
}
