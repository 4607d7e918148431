/* The node daemon: owns the nftables table and policy routing, runs the
 * proxy, and follows the controller's snapshots (DESIGN §1, §2, §6).
 *
 * Lifecycle: start the proxy's listeners first, then install the table, so
 * that captured connections always find a listener while we run.  When the
 * daemon dies the table stays and captured connections are refused (fail
 * closed); `weft node --cleanup` removes table and routing on purpose. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "weft/certstore.h"
#include "weft/gen.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/nft.h"
#include "weft/node.h"
#include "weft/proxy.h"
#include "weft/snapshot.h"
#include "node/admin.h"
#include "node/client.h"
#include "node/identity.h"

#define NODE_DEFAULT_STATE_DIR	"/var/lib/weft"
#define NODE_SNAPSHOT_FILE	"snapshot.json"
#define NODE_MAX_POD_CIDRS	8

struct node {
	struct event_base *base;
	struct weft_nft	*nft;
	struct weft_proxy *proxy;
	struct weft_client *client;
	struct weft_identity *identity;
	struct weft_metrics *metrics;		/* NULL: --no-metrics */
	struct weft_admin *admin;
	struct weft_metrics_push *mpush;
	struct event	*ev_sigterm, *ev_sigint, *ev_monitor, *ev_check;
	int		 monitor_fd;
	const char	*node_name;
	const char	*state_dir;
	const char	*iface_prefix;
	/* Boot-time CIDRs from --pod-cidr, used until a snapshot names them. */
	struct weft_cidr boot_cidrs[NODE_MAX_POD_CIDRS];
	size_t		 n_boot_cidrs;
	struct weft_nft_config applied;		/* what the table holds */
	bool		 have_applied;
	int		 expected_rules;	/* rules in the table we built */
	uint64_t	 generation;
};

static void
node_usage(FILE *f)
{
	fprintf(f,
	    "usage: weft node --node-name NAME --controller URL --token-file FILE [options]\n"
	    "       weft node --cleanup\n"
	    "\n"
	    "Capture the traffic of this node's pods with nftables (table inet weft),\n"
	    "relay it through weft's proxy, and follow the controller's snapshots.\n"
	    "\n"
	    "  --node-name NAME         this node's name (Node object), or $NODE_NAME\n"
	    "  --controller URL         controller API, e.g. https://10.0.0.1:15010\n"
	    "                           (or http:// without TLS)\n"
	    "  --ca-bundle FILE         CA certificates (PEM) the controller's certificate\n"
	    "                           must chain to; required for https://\n"
	    "  --token-file FILE        bearer token that authenticates this node (in\n"
	    "                           Kubernetes its projected service account token;\n"
	    "                           re-read when the file changes)\n"
	    "  --state-dir DIR          last snapshot is kept here (default %s)\n"
	    "  --pod-cidr CIDR          capture this CIDR from the start, before the\n"
	    "                           first snapshot arrives (repeatable)\n"
	    "  --pod-iface-prefix P     host-side pod interfaces are named P* (default wv)\n"
	    "  --workers N              proxy threads (default: one per core)\n"
	    "  --poll-timeout SECONDS   long-poll hold time the controller uses (default 30)\n"
	    "  --log-level LEVEL        error, warn, info (default) or debug\n"
	    "  --admin-listen ADDR:PORT /metrics, /healthz, /readyz, /debug/config\n"
	    "                           (default 0.0.0.0:15020)\n"
	    "  --no-metrics             record no request or connection metrics\n"
	    "  --metrics-push-interval MS  SMI edge metrics to the controller this\n"
	    "                           often (default 5000)\n"
	    "  --metrics-expiry SECONDS drop series idle this long (default 300)\n"
	    "  --tunnel-pool on|off     on (default): connections to another node's pods\n"
	    "                           share pooled mTLS connections; off: each gets its\n"
	    "                           own, closed when it ends (for measurements)\n"
	    "  --cleanup                remove table inet weft and weft's policy routing, exit\n"
	    "  -h, --help               this text\n",
	    NODE_DEFAULT_STATE_DIR);
}

static int
node_parse_level(const char *s, enum weft_log_level *out)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	int i;

	for (i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum weft_log_level)i;
			return 0;
		}
	}
	return -1;
}

static char *
node_read_file(const char *path, size_t *lenp)
{
	FILE *f;
	char *buf = NULL;
	size_t cap = 0, len = 0, n;

	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *nb;

			cap = cap ? cap * 2 : 8192;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

static char *
node_read_token(const char *path)
{
	char *t, *end;

	if ((t = node_read_file(path, NULL)) == NULL)
		return NULL;
	end = t + strlen(t);
	while (end > t && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (*t == '\0') {
		free(t);
		errno = EINVAL;
		return NULL;
	}
	return t;
}

/* Persist atomically: write a temporary file, fsync, rename. */
static int
node_persist(struct node *n, const char *json, size_t len)
{
	char path[4096], tmp[4096 + 8];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", n->state_dir, NODE_SNAPSHOT_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1)
		return -1;
	if (write(fd, json, len) != (ssize_t)len || fsync(fd) == -1) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	return rename(tmp, path);
}

int
weft_node_nft_config(const struct weft_gen *g, const char *iface_prefix,
    struct weft_nft_config *out)
{
	const struct weft_snapshot *s = weft_gen_snapshot(g);
	const struct weft_snap_node *self = weft_gen_self(g);
	size_t i, nm = 0, ne = 0;

	memset(out, 0, sizeof(*out));
	out->pod_iface_prefix = iface_prefix;
	out->outbound_port = WEFT_PORT_OUTBOUND;
	out->inbound_port = WEFT_PORT_INBOUND;
	out->tunnel_port = WEFT_PORT_TUNNEL;
	out->own_mark = WEFT_MARK_OWN;
	out->tproxy_mark = WEFT_MARK_TPROXY;
	if (self != NULL && self->n_pod_cidrs > 0) {
		out->pod_cidrs = calloc(self->n_pod_cidrs, sizeof(*out->pod_cidrs));
		if (out->pod_cidrs == NULL)
			goto fail;
		memcpy(out->pod_cidrs, self->pod_cidrs,
		    self->n_pod_cidrs * sizeof(*out->pod_cidrs));
		out->n_pod_cidrs = self->n_pod_cidrs;
	}
	for (i = 0; i < s->n_pods; i++) {
		if (s->pods[i].ip.family == 0 ||
		    !weft_gen_pod_is_local(g, &s->pods[i]))
			continue;
		if (s->pods[i].meshed)
			nm++;
		else
			ne++;
	}
	if ((nm > 0 && (out->meshed = calloc(nm, sizeof(*out->meshed))) == NULL) ||
	    (ne > 0 && (out->exempt = calloc(ne, sizeof(*out->exempt))) == NULL))
		goto fail;
	for (i = 0; i < s->n_pods; i++) {
		const struct weft_snap_pod *p = &s->pods[i];
		struct weft_nft_pod *e;

		if (p->ip.family == 0 || !weft_gen_pod_is_local(g, p))
			continue;
		e = p->meshed ? &out->meshed[out->n_meshed++] :
		    &out->exempt[out->n_exempt++];
		e->ip = p->ip;
		snprintf(e->comment, sizeof(e->comment), "%s/%s",
		    p->namespace, p->name);
	}
	/* UDP is enforced by the table, not the proxy (node/udp.c). */
	if (weft_node_udp_grants(g, weft_gen_policy(g), weft_policy_udp_grants,
	    &out->udp, &out->n_udp) == -1)
		goto fail;
	weft_nft_config_sort(out);
	return 0;
fail:
	weft_node_nft_config_free(out);
	return -1;
}

void
weft_node_nft_config_free(struct weft_nft_config *cfg)
{
	free(cfg->pod_cidrs);
	free(cfg->meshed);
	free(cfg->exempt);
	free(cfg->udp);
	memset(cfg, 0, sizeof(*cfg));
}

static void
node_count_rule(const char *chain, const char *comment, uint64_t packets,
    uint64_t bytes, void *arg)
{
	(*(int *)arg)++;
}

static int
node_count_rules(struct node *n)
{
	char *err = NULL;
	int count = 0;

	if (weft_nft_read_counters(n->nft, node_count_rule, &count, &err) == -1) {
		free(err);
		return -1;
	}
	return count;
}

/* Make the table hold cfg: set-element updates when only pods changed,
 * otherwise one full replace.  On success the node owns cfg. */
static int
node_apply_nft(struct node *n, struct weft_nft_config *cfg, bool force_full)
{
	char *err = NULL;
	bool full = force_full || !n->have_applied ||
	    !weft_nft_config_same_rules(&n->applied, cfg);

	if (full) {
		if (weft_nft_apply(n->nft, cfg, &err) == -1) {
			log_warnx("nftables: installing table inet weft failed: %s",
			    err ? err : "?");
			free(err);
			return -1;
		}
		n->expected_rules = node_count_rules(n);
	} else if (weft_nft_update_pods(n->nft, &n->applied, cfg, &err) == -1) {
		log_warnx("nftables: updating sets failed: %s; "
		    "replacing the table", err ? err : "?");
		free(err);
		return node_apply_nft(n, cfg, true);
	}
	if (n->have_applied)
		weft_node_nft_config_free(&n->applied);
	n->applied = *cfg;
	n->have_applied = true;
	memset(cfg, 0, sizeof(*cfg));
	log_info("nftables: table inet weft %s: %zu pod CIDR(s), %zu meshed "
	    "pod(s), %zu exempt pod(s), %zu UDP grant(s)",
	    full ? "installed" : "updated", n->applied.n_pod_cidrs,
	    n->applied.n_meshed, n->applied.n_exempt, n->applied.n_udp);
	return 0;
}

/* The table before any snapshot: capture what --pod-cidr names (or nothing
 * but the fail-closed skeleton). */
static int
node_apply_boot(struct node *n)
{
	struct weft_nft_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.pod_iface_prefix = n->iface_prefix;
	cfg.outbound_port = WEFT_PORT_OUTBOUND;
	cfg.inbound_port = WEFT_PORT_INBOUND;
	cfg.tunnel_port = WEFT_PORT_TUNNEL;
	cfg.own_mark = WEFT_MARK_OWN;
	cfg.tproxy_mark = WEFT_MARK_TPROXY;
	if (n->n_boot_cidrs > 0) {
		if ((cfg.pod_cidrs = calloc(n->n_boot_cidrs,
		    sizeof(*cfg.pod_cidrs))) == NULL)
			return -1;
		memcpy(cfg.pod_cidrs, n->boot_cidrs,
		    n->n_boot_cidrs * sizeof(*cfg.pod_cidrs));
		cfg.n_pod_cidrs = n->n_boot_cidrs;
	}
	if (node_apply_nft(n, &cfg, true) == -1) {
		weft_node_nft_config_free(&cfg);
		return -1;
	}
	return 0;
}

/* Decode, compile, install and publish one snapshot.  persist: also write
 * it to the state directory (not when it came from there). */
static int
node_apply_snapshot(struct node *n, const char *json, size_t len,
    bool persist)
{
	struct weft_snapshot *snap;
	struct weft_gen *g;
	struct weft_nft_config cfg;
	char *err = NULL;
	uint64_t gen;

	if ((snap = weft_snapshot_decode(json, len, &err)) == NULL) {
		log_warnx("snapshot rejected: %s", err ? err : "?");
		free(err);
		return -1;
	}
	if (snap->node_name == NULL || strcmp(snap->node_name, n->node_name) != 0) {
		log_warnx("snapshot rejected: it is for node %s, not %s",
		    snap->node_name ? snap->node_name : "(none)", n->node_name);
		weft_snapshot_free(snap);
		return -1;
	}
	gen = snap->generation;
	if ((g = weft_gen_build(snap, &err)) == NULL) {
		log_warnx("snapshot generation %llu rejected: %s",
		    (unsigned long long)gen, err ? err : "?");
		free(err);
		return -1;
	}
	if (weft_node_nft_config(g, n->iface_prefix, &cfg) == -1) {
		weft_gen_unref(g);
		log_warnx("snapshot generation %llu: out of memory",
		    (unsigned long long)gen);
		return -1;
	}
	/* Publish before the sets grow, so a newly captured pod is known to
	 * the proxy by the time its first packet is redirected. */
	weft_gen_publish(g);
	if (node_apply_nft(n, &cfg, false) == -1) {
		weft_node_nft_config_free(&cfg);
		return -1;
	}
	n->generation = gen;
	/* Certificates follow the local pods; the generation stays current
	 * (published above) for as long as this call. */
	if (n->identity != NULL)
		weft_identity_apply(n->identity, g);
	if (persist && node_persist(n, json, len) == -1)
		log_warn("cannot persist snapshot in %s", n->state_dir);
	log_info("applied generation %llu", (unsigned long long)gen);
	return 0;
}

static int
node_snapshot_cb(const char *json, size_t len, void *arg)
{
	struct node *n = arg;

	if (node_apply_snapshot(n, json, len, true) == -1)
		return -1;
	weft_client_set_have(n->client, n->generation);
	return 0;
}

/* The controller is back: certificate requests in backoff go now. */
static void
node_reachable_cb(void *arg)
{
	struct node *n = arg;

	weft_identity_kick(n->identity);
}

static void
node_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct node *n = arg;

	log_info("signal %d: stopping; table inet weft stays in place, so "
	    "captured connections are refused until weft node runs again",
	    (int)sig);
	event_base_loopexit(n->base, NULL);
}

/* Someone changed nftables.  Look at our table after the burst settles and
 * restore it if it was deleted or lost rules. */
static void
node_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	struct weft_nft_config cfg;
	char *err = NULL;
	int exists, rules;

	if (!n->have_applied)
		return;
	exists = weft_nft_exists(n->nft, &err);
	free(err);
	rules = exists == 1 ? node_count_rules(n) : 0;
	if (exists == 1 && rules == n->expected_rules)
		return;
	log_warnx("table inet weft was %s by someone else; restoring it",
	    exists == 1 ? "changed" : "deleted");
	cfg = n->applied;
	n->have_applied = false;
	memset(&n->applied, 0, sizeof(n->applied));
	if (node_apply_nft(n, &cfg, true) == -1) {
		/* Keep the desired state; try again shortly. */
		struct timeval tv = { 1, 0 };

		n->applied = cfg;
		n->have_applied = true;
		evtimer_add(n->ev_check, &tv);
	}
}

static void
node_monitor_cb(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	struct timeval tv = { 0, 200000 };

	if (weft_nft_monitor_read(fd) != 0)
		evtimer_add(n->ev_check, &tv);
}

static int
node_cleanup(void)
{
	struct weft_nft *nft;
	char *err = NULL;
	int rc = 0;

	if ((nft = weft_nft_open(&err)) == NULL) {
		log_warnx("nftables: %s", err ? err : "?");
		free(err);
		return 1;
	}
	if (weft_nft_delete(nft, &err) == -1) {
		log_warnx("nftables: deleting table inet weft: %s", err ? err : "?");
		free(err);
		err = NULL;
		rc = 1;
	}
	weft_nft_close(nft);
	if (weft_route_remove(WEFT_MARK_TPROXY, WEFT_ROUTE_TABLE,
	    WEFT_ROUTE_PRIORITY, &err) == -1) {
		log_warnx("routing: %s", err ? err : "?");
		free(err);
		rc = 1;
	}
	if (rc == 0)
		log_info("removed table inet weft and weft's policy routing");
	return rc;
}

int
weft_node_main(int argc, char **argv)
{
	enum { OPT_NODE_NAME = 256, OPT_CONTROLLER, OPT_TOKEN_FILE,
	    OPT_STATE_DIR, OPT_POD_CIDR, OPT_IFACE_PREFIX, OPT_WORKERS,
	    OPT_POLL_TIMEOUT, OPT_LOG_LEVEL, OPT_CLEANUP, OPT_CA_BUNDLE,
	    OPT_ADMIN_LISTEN, OPT_NO_METRICS, OPT_METRICS_PUSH,
	    OPT_METRICS_EXPIRY, OPT_TUNNEL_POOL };
	static const struct option opts[] = {
		{ "node-name", required_argument, NULL, OPT_NODE_NAME },
		{ "controller", required_argument, NULL, OPT_CONTROLLER },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "ca-bundle", required_argument, NULL, OPT_CA_BUNDLE },
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "pod-cidr", required_argument, NULL, OPT_POD_CIDR },
		{ "pod-iface-prefix", required_argument, NULL, OPT_IFACE_PREFIX },
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "poll-timeout", required_argument, NULL, OPT_POLL_TIMEOUT },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "cleanup", no_argument, NULL, OPT_CLEANUP },
		{ "admin-listen", required_argument, NULL, OPT_ADMIN_LISTEN },
		{ "no-metrics", no_argument, NULL, OPT_NO_METRICS },
		{ "metrics-push-interval", required_argument, NULL,
		    OPT_METRICS_PUSH },
		{ "metrics-expiry", required_argument, NULL, OPT_METRICS_EXPIRY },
		{ "tunnel-pool", required_argument, NULL, OPT_TUNNEL_POOL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct node n;
	struct weft_proxy_config pcfg;
	const char *controller = NULL, *token_file = NULL, *ca_bundle = NULL;
	char *token = NULL, *err = NULL, *json, path[4096];
	enum weft_log_level level = WEFT_LOG_INFO;
	bool cleanup = false, metrics_on = true, tunnel_pool = true;
	int c, workers = 0, poll_timeout = 30, rc = 1, push_ms = 5000;
	const char *admin_listen = "0.0.0.0:15020";
	struct weft_metrics_config mcfg;
	struct weft_admin_state ast;
	size_t len;

	memset(&n, 0, sizeof(n));
	weft_metrics_config_defaults(&mcfg);
	n.monitor_fd = -1;
	n.state_dir = NODE_DEFAULT_STATE_DIR;
	n.iface_prefix = "wv";
	n.node_name = getenv("NODE_NAME");
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_NODE_NAME:
			n.node_name = optarg;
			break;
		case OPT_CONTROLLER:
			controller = optarg;
			break;
		case OPT_TOKEN_FILE:
			token_file = optarg;
			break;
		case OPT_CA_BUNDLE:
			ca_bundle = optarg;
			break;
		case OPT_STATE_DIR:
			n.state_dir = optarg;
			break;
		case OPT_POD_CIDR:
			if (n.n_boot_cidrs == NODE_MAX_POD_CIDRS) {
				fprintf(stderr, "weft node: at most %d --pod-cidr\n",
				    NODE_MAX_POD_CIDRS);
				return 2;
			}
			if (weft_cidr_parse(optarg,
			    &n.boot_cidrs[n.n_boot_cidrs]) == -1) {
				fprintf(stderr, "weft node: --pod-cidr %s: not a "
				    "CIDR (host bits must be zero)\n", optarg);
				return 2;
			}
			n.n_boot_cidrs++;
			break;
		case OPT_IFACE_PREFIX:
			n.iface_prefix = optarg;
			break;
		case OPT_WORKERS:
			workers = atoi(optarg);
			if (workers < 0 || workers > 256) {
				fprintf(stderr, "weft node: --workers %s: expected "
				    "0-256\n", optarg);
				return 2;
			}
			break;
		case OPT_POLL_TIMEOUT:
			poll_timeout = atoi(optarg);
			if (poll_timeout < 1 || poll_timeout > 3600) {
				fprintf(stderr, "weft node: --poll-timeout %s: "
				    "expected 1-3600\n", optarg);
				return 2;
			}
			break;
		case OPT_LOG_LEVEL:
			if (node_parse_level(optarg, &level) == -1) {
				fprintf(stderr, "weft node: --log-level %s: "
				    "expected error, warn, info or debug\n", optarg);
				return 2;
			}
			break;
		case OPT_CLEANUP:
			cleanup = true;
			break;
		case OPT_ADMIN_LISTEN:
			admin_listen = optarg;
			break;
		case OPT_NO_METRICS:
			metrics_on = false;
			break;
		case OPT_METRICS_PUSH:
			push_ms = atoi(optarg);
			if (push_ms < 100 || push_ms > 3600000) {
				fprintf(stderr, "weft node: --metrics-push-interval "
				    "%s: expected 100-3600000 (ms)\n", optarg);
				return 2;
			}
			break;
		case OPT_METRICS_EXPIRY:
			mcfg.expiry_s = atoi(optarg);
			if (mcfg.expiry_s < 1 || mcfg.expiry_s > 86400) {
				fprintf(stderr, "weft node: --metrics-expiry %s: "
				    "expected 1-86400 (seconds)\n", optarg);
				return 2;
			}
			break;
		case OPT_TUNNEL_POOL:
			if (strcmp(optarg, "on") == 0)
				tunnel_pool = true;
			else if (strcmp(optarg, "off") == 0)
				tunnel_pool = false;
			else {
				fprintf(stderr, "weft node: --tunnel-pool %s: "
				    "expected on or off\n", optarg);
				return 2;
			}
			break;
		case 'h':
			node_usage(stdout);
			return 0;
		default:
			node_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "weft node: unexpected argument '%s'\n",
		    argv[optind]);
		return 2;
	}
	weft_log_init("weft-node", level);
	if (cleanup)
		return node_cleanup();
	if (n.node_name == NULL || controller == NULL || token_file == NULL) {
		fprintf(stderr, "weft node: --node-name, --controller and "
		    "--token-file are required\n");
		node_usage(stderr);
		return 2;
	}
	if ((token = node_read_token(token_file)) == NULL) {
		log_warn("token file %s", token_file);
		return 1;
	}
	if (mkdir(n.state_dir, 0700) == -1 && errno != EEXIST) {
		log_warn("state directory %s", n.state_dir);
		goto out;
	}
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	/* The relay reads into 64 KiB buffers that are freed as soon as they
	 * are written.  With glibc's defaults every free near the top of an
	 * arena returned memory to the kernel and every read faulted it back
	 * in (page faults and TLB shootdowns were half the relay's CPU):
	 * keep freed memory for reuse instead. */
	mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);

	if ((n.base = event_base_new()) == NULL) {
		log_warnx("event_base_new failed");
		goto out;
	}

	/* The controller client and the identity manager exist before any
	 * snapshot is applied (the restored one included) so that identities
	 * are requested as soon as the loop runs; nothing is sent before. */
	if ((n.client = weft_client_new(n.base, controller, ca_bundle,
	    n.node_name, token, poll_timeout, node_snapshot_cb, &n,
	    &err)) == NULL) {
		log_warnx("%s", err ? err : "?");
		goto out;
	}
	explicit_bzero(token, strlen(token));
	if (weft_client_set_token_file(n.client, token_file) == -1) {
		log_warnx("out of memory");
		goto out;
	}
	if ((n.identity = weft_identity_new(n.base, n.client, n.state_dir)) == NULL) {
		log_warnx("identity manager: out of memory");
		goto out;
	}
	weft_client_on_reachable(n.client, node_reachable_cb, &n);

	/* Metrics: one shard per worker (the proxy starts one per core
	 * when --workers is 0). */
	if (metrics_on) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		if ((n.metrics = weft_metrics_new(&mcfg, workers > 0 ? workers :
		    ncpu > 0 ? (int)ncpu : 1)) == NULL) {
			log_warnx("metrics: out of memory");
			goto out;
		}
	} else
		log_info("metrics: off (--no-metrics): no request or "
		    "connection metrics are recorded");

	/* 1. Listeners first: whatever the table captures finds us. */
	memset(&pcfg, 0, sizeof(pcfg));
	pcfg.workers = workers;
	pcfg.metrics = n.metrics;
	pcfg.outbound_port = WEFT_PORT_OUTBOUND;
	pcfg.inbound_port = WEFT_PORT_INBOUND;
	pcfg.own_mark = WEFT_MARK_OWN;
	pcfg.tunnel_pool_off = !tunnel_pool;
	if (weft_proxy_start(&pcfg, &n.proxy) == -1)
		goto out;
	if (tunnel_pool)
		log_info("tunnel: pooling on: connections to pods of other "
		    "nodes share mTLS connections (per source, destination "
		    "and node)");
	else
		log_info("tunnel: pooling off (--tunnel-pool off): one mTLS "
		    "connection per connection to a pod of another node, "
		    "closed when it ends");

	/* 2. Policy routing and the table. */
	if (weft_route_install(WEFT_MARK_TPROXY, WEFT_ROUTE_TABLE,
	    WEFT_ROUTE_PRIORITY, &err) == -1) {
		log_warnx("routing: %s", err ? err : "?");
		goto out;
	}
	if ((n.nft = weft_nft_open(&err)) == NULL) {
		log_warnx("nftables: %s", err ? err : "?");
		goto out;
	}
	memset(&ast, 0, sizeof(ast));
	ast.nft = n.nft;
	ast.proxy = n.proxy;
	ast.metrics = n.metrics;
	ast.table_installed = &n.have_applied;
	if ((n.admin = weft_admin_new(n.base, admin_listen, &ast,
	    &err)) == NULL) {
		log_warnx("%s", err ? err : "admin server: out of memory");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s", n.state_dir, NODE_SNAPSHOT_FILE);
	if ((json = node_read_file(path, &len)) != NULL) {
		/* Serve from the last snapshot while the controller may be
		 * away; never start open. */
		log_info("restoring last snapshot from %s", path);
		if (node_apply_snapshot(&n, json, len, false) == -1 &&
		    node_apply_boot(&n) == -1) {
			free(json);
			goto out;
		}
		free(json);
	} else if (node_apply_boot(&n) == -1)
		goto out;

	/* 3. Keep the table ours: restore it if someone removes it. */
	if ((n.monitor_fd = weft_nft_monitor_open(&err)) == -1) {
		log_warnx("nftables monitor: %s; table changes by others will "
		    "not be repaired", err ? err : "?");
		free(err);
		err = NULL;
	} else {
		n.ev_monitor = event_new(n.base, n.monitor_fd,
		    EV_READ | EV_PERSIST, node_monitor_cb, &n);
		event_add(n.ev_monitor, NULL);
	}
	n.ev_check = evtimer_new(n.base, node_check_cb, &n);

	/* 4. Follow the controller, and feed its SMI metrics API. */
	if (n.metrics != NULL && (n.mpush = weft_metrics_push_new(n.base,
	    n.client, n.metrics, n.node_name, push_ms)) == NULL) {
		log_warnx("metrics: out of memory");
		goto out;
	}
	weft_client_set_have(n.client, 0);
	weft_client_start(n.client);

	n.ev_sigterm = evsignal_new(n.base, SIGTERM, node_signal_cb, &n);
	n.ev_sigint = evsignal_new(n.base, SIGINT, node_signal_cb, &n);
	event_add(n.ev_sigterm, NULL);
	event_add(n.ev_sigint, NULL);
	log_info("node %s running; controller %s", n.node_name, controller);
	event_base_dispatch(n.base);
	rc = 0;
out:
	free(err);
	free(token);
	weft_metrics_push_free(n.mpush);
	weft_admin_free(n.admin);
	weft_identity_free(n.identity);
	weft_client_free(n.client);
	if (n.proxy != NULL)
		weft_proxy_stop(n.proxy);
	weft_metrics_free(n.metrics);
	weft_certstore_clear();
	if (n.ev_sigterm != NULL)
		event_free(n.ev_sigterm);
	if (n.ev_sigint != NULL)
		event_free(n.ev_sigint);
	if (n.ev_monitor != NULL)
		event_free(n.ev_monitor);
	if (n.ev_check != NULL)
		event_free(n.ev_check);
	if (n.monitor_fd != -1)
		close(n.monitor_fd);
	if (n.have_applied)
		weft_node_nft_config_free(&n.applied);
	weft_nft_close(n.nft);
	weft_gen_publish(NULL);
	if (n.base != NULL)
		event_base_free(n.base);
	return rc;
}
