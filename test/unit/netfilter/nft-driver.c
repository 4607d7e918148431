/* A command-line driver of the netfilter/ API, for the root smoke test
 * (test/integration/nft-smoke.sh), run inside a throwaway network namespace.
 *
 *   nft-driver apply  SPEC
 *   nft-driver update SPEC -- SPEC      (old -- new)
 *   nft-driver exists | delete | counters
 *   nft-driver monitor SECONDS          (prints "changed" or "quiet")
 *   nft-driver monitor-own SECONDS SPEC (own apply+update quiet, then
 *                                        waits for a foreign change)
 *   nft-driver route-install | route-remove
 *
 * SPEC: words "cidr=10.244.1.0/24", "meshed=10.244.1.10/demo/web",
 * "exempt=10.244.1.20/plain/db", "prefix=wv" (prefix= for none),
 * "udp=SRC,DST,LO-HI,COMMENT" (a UDP grant; -HI optional) and
 * "udp=*,DST,LO-HI,COMMENT" (to DST from every source). */
#include "config.h"

#include <sys/types.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/ip.h"
#include "weft/nft.h"
#include "weft/proxy.h"

#define MAXN 64

struct spec {
	struct weft_nft_config	cfg;
	struct weft_cidr	cidrs[MAXN];
	struct weft_nft_pod	meshed[MAXN], exempt[MAXN];
	struct weft_nft_udp	udp[MAXN];
	char			prefix[16];
};

static int
parse_pod(const char *v, struct weft_nft_pod *p)
{
	char ip[64];
	const char *slash = strchr(v, '/');

	memset(p, 0, sizeof(*p));
	if (slash == NULL || (size_t)(slash - v) >= sizeof(ip))
		return -1;
	memcpy(ip, v, (size_t)(slash - v));
	ip[slash - v] = '\0';
	snprintf(p->comment, sizeof(p->comment), "%s", slash + 1);
	return weft_ip_parse(ip, &p->ip);
}

static int
parse_udp(const char *v, struct weft_nft_udp *u)
{
	char src[64], dst[64];
	unsigned lo, hi;
	int n = 0;

	memset(u, 0, sizeof(*u));
	if (sscanf(v, "%63[^,],%63[^,],%u%n", src, dst, &lo, &n) != 3)
		return -1;
	v += n;
	hi = lo;
	if (*v == '-' && sscanf(v, "-%u%n", &hi, &n) == 1)
		v += n;
	if (*v == ',')
		snprintf(u->comment, sizeof(u->comment), "%s", v + 1);
	else if (*v != '\0')
		return -1;
	if (lo > 65535 || hi > 65535)
		return -1;
	u->port_lo = (uint16_t)lo;
	u->port_hi = (uint16_t)hi;
	u->any_src = strcmp(src, "*") == 0;
	if (!u->any_src && weft_ip_parse(src, &u->src) == -1)
		return -1;
	return weft_ip_parse(dst, &u->dst);
}

static int
parse_spec(char **av, int ac, struct spec *s)
{
	int i;

	memset(s, 0, sizeof(*s));
	s->cfg.pod_cidrs = s->cidrs;
	s->cfg.meshed = s->meshed;
	s->cfg.exempt = s->exempt;
	s->cfg.udp = s->udp;
	snprintf(s->prefix, sizeof(s->prefix), "wv");
	s->cfg.pod_iface_prefix = s->prefix;
	s->cfg.outbound_port = WEFT_PORT_OUTBOUND;
	s->cfg.inbound_port = WEFT_PORT_INBOUND;
	s->cfg.tunnel_port = WEFT_PORT_TUNNEL;
	s->cfg.own_mark = WEFT_MARK_OWN;
	s->cfg.tproxy_mark = WEFT_MARK_TPROXY;
	for (i = 0; i < ac; i++) {
		const char *a = av[i];

		if (strncmp(a, "cidr=", 5) == 0 && s->cfg.n_pod_cidrs < MAXN) {
			if (weft_cidr_parse(a + 5,
			    &s->cidrs[s->cfg.n_pod_cidrs++]) == -1)
				return -1;
		} else if (strncmp(a, "meshed=", 7) == 0 &&
		    s->cfg.n_meshed < MAXN) {
			if (parse_pod(a + 7, &s->meshed[s->cfg.n_meshed++]))
				return -1;
		} else if (strncmp(a, "exempt=", 7) == 0 &&
		    s->cfg.n_exempt < MAXN) {
			if (parse_pod(a + 7, &s->exempt[s->cfg.n_exempt++]))
				return -1;
		} else if (strncmp(a, "udp=", 4) == 0 && s->cfg.n_udp < MAXN) {
			if (parse_udp(a + 4, &s->udp[s->cfg.n_udp++]))
				return -1;
		} else if (strncmp(a, "prefix=", 7) == 0) {
			snprintf(s->prefix, sizeof(s->prefix), "%s", a + 7);
		} else {
			fprintf(stderr, "bad word: %s\n", a);
			return -1;
		}
	}
	weft_nft_config_sort(&s->cfg);
	return 0;
}

static void
print_counter(const char *chain, const char *comment, uint64_t packets,
    uint64_t bytes, void *arg)
{
	printf("%s\t%llu\t%llu\t%s\n", chain, (unsigned long long)packets,
	    (unsigned long long)bytes, comment);
}

static int
fail(const char *what, char *err)
{
	fprintf(stderr, "%s: %s\n", what, err ? err : "(no message)");
	free(err);
	return 1;
}

int
main(int argc, char **argv)
{
	static struct spec a, b;
	struct weft_nft *n;
	char *err = NULL;
	int rc = 0, i;

	if (argc < 2) {
		fprintf(stderr, "usage: see the source\n");
		return 2;
	}
	if (strcmp(argv[1], "route-install") == 0)
		return weft_route_install(WEFT_MARK_TPROXY, WEFT_ROUTE_TABLE,
		    WEFT_ROUTE_PRIORITY, &err) ? fail("route", err) : 0;
	if (strcmp(argv[1], "route-remove") == 0)
		return weft_route_remove(WEFT_MARK_TPROXY, WEFT_ROUTE_TABLE,
		    WEFT_ROUTE_PRIORITY, &err) ? fail("route", err) : 0;
	if (strcmp(argv[1], "monitor") == 0) {
		int fd = weft_nft_monitor_open(&err), secs;
		struct pollfd pfd;

		if (fd == -1)
			return fail("monitor", err);
		secs = argc > 2 ? atoi(argv[2]) : 5;
		printf("listening\n");
		fflush(stdout);
		pfd.fd = fd;
		pfd.events = POLLIN;
		while (poll(&pfd, 1, secs * 1000) > 0) {
			if ((rc = weft_nft_monitor_read(fd)) == 1) {
				printf("changed\n");
				return 0;
			}
			if (rc == -1)
				return 1;
		}
		printf("quiet\n");
		return 0;
	}
	if ((n = weft_nft_open(&err)) == NULL)
		return fail("open", err);
	if (strcmp(argv[1], "monitor-own") == 0) {
		/* Our own apply and update, in the same process as the
		 * monitor (as in the daemon), must not count as a change; a
		 * foreign one within SECONDS must. */
		int fd = weft_nft_monitor_open(&err), secs;
		struct pollfd pfd;

		if (fd == -1)
			return fail("monitor", err);
		secs = argc > 2 ? atoi(argv[2]) : 5;
		if (parse_spec(argv + 3, argc - 3, &a) == -1)
			return 2;
		b = a;
		b.cfg.meshed = b.meshed;
		b.cfg.exempt = b.exempt;
		b.cfg.pod_cidrs = b.cidrs;
		b.cfg.udp = b.udp;
		b.cfg.n_meshed = 0;
		if (weft_nft_apply(n, &a.cfg, &err) == -1 ||
		    weft_nft_update_pods(n, &a.cfg, &b.cfg, &err) == -1)
			return fail("apply", err);
		pfd.fd = fd;
		pfd.events = POLLIN;
		poll(&pfd, 1, 200);
		printf("own: %s\n", weft_nft_monitor_read(fd) == 0 ? "quiet" :
		    "changed");
		fflush(stdout);
		rc = 0;
		while (poll(&pfd, 1, secs * 1000) > 0)
			if (weft_nft_monitor_read(fd) == 1) {
				rc = 1;
				break;
			}
		printf("foreign: %s\n", rc ? "changed" : "quiet");
		close(fd);
		weft_nft_close(n);
		return 0;
	}
	if (strcmp(argv[1], "apply") == 0) {
		if (parse_spec(argv + 2, argc - 2, &a) == -1)
			return 2;
		if (weft_nft_apply(n, &a.cfg, &err) == -1)
			rc = fail("apply", err);
	} else if (strcmp(argv[1], "update") == 0) {
		for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
			;
		if (i == argc || parse_spec(argv + 2, i - 2, &a) == -1 ||
		    parse_spec(argv + i + 1, argc - i - 1, &b) == -1)
			return 2;
		if (!weft_nft_config_same_rules(&a.cfg, &b.cfg))
			printf("rules differ: a full apply is needed\n");
		if (weft_nft_update_pods(n, &a.cfg, &b.cfg, &err) == -1)
			rc = fail("update", err);
	} else if (strcmp(argv[1], "exists") == 0) {
		rc = weft_nft_exists(n, &err);
		if (rc == -1)
			return fail("exists", err);
		printf("%s\n", rc ? "exists" : "absent");
		rc = 0;
	} else if (strcmp(argv[1], "delete") == 0) {
		if (weft_nft_delete(n, &err) == -1)
			rc = fail("delete", err);
	} else if (strcmp(argv[1], "counters") == 0) {
		if (weft_nft_read_counters(n, print_counter, NULL, &err) == -1)
			rc = fail("counters", err);
	} else {
		fprintf(stderr, "unknown command %s\n", argv[1]);
		rc = 2;
	}
	weft_nft_close(n);
	return rc;
}
