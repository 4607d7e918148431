/* The node's telemetry glue: the admin address parser and readiness
 * (node/admin.c), and the labels proxy/observe.c gives a connection's
 * flow from a generation. */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "weft/certstore.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/metrics.h"
#include "weft/snapshot.h"
#include "../../../node/admin.c"
#include "../../tap.h"

static char *
xs(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
add_pod(struct weft_snapshot *s, const char *ns, const char *name,
    const char *sa, const char *node, const char *ip)
{
	struct weft_snap_pod *p;

	s->pods = realloc(s->pods, (s->n_pods + 1) * sizeof(*s->pods));
	p = &s->pods[s->n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = xs(ns);
	p->name = xs(name);
	p->node = xs(node);
	p->service_account = xs(sa);
	p->meshed = true;
	p->ready = true;
	weft_ip_parse(ip, &p->ip);
}

static struct weft_snapshot *
snapshot(bool bundle)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_snap_service *svc;

	s->generation = 9;
	s->node_name = xs("node-1");
	s->trust_domain = xs("cluster.local");
	if (bundle)
		s->trust_bundle = xs("-----BEGIN CERTIFICATE-----\n");
	s->nodes = calloc(2, sizeof(*s->nodes));
	s->n_nodes = 2;
	s->nodes[0].name = xs("node-1");
	s->nodes[0].pod_cidrs = calloc(1, sizeof(struct weft_cidr));
	s->nodes[0].n_pod_cidrs = 1;
	weft_cidr_parse("10.244.1.0/24", &s->nodes[0].pod_cidrs[0]);
	s->nodes[1].name = xs("node-2");
	add_pod(s, "shop", "api-1", "api", "node-2", "10.244.2.10");
	add_pod(s, "shop", "api-2", "api", "node-1", "10.244.1.11");
	add_pod(s, "tools", "client", "client", "node-1", "10.244.1.12");
	s->services = calloc(1, sizeof(*s->services));
	s->n_services = 1;
	svc = &s->services[0];
	svc->namespace = xs("shop");
	svc->name = xs("api");
	weft_ip_parse("10.96.0.10", &svc->cluster_ip);
	svc->ports = calloc(1, sizeof(*svc->ports));
	svc->n_ports = 1;
	svc->ports[0].port = 80;
	svc->ports[0].protocol = IPPROTO_TCP;
	svc->ports[0].target_port = 8080;
	return s;
}

static void
sa(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct weft_ip a;
	socklen_t len;

	weft_ip_parse(ip, &a);
	weft_ip_to_sockaddr(&a, port, ss, &len);
}

static char *
expose(struct weft_metrics *m)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	weft_metrics_write_prometheus(m, b);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

static void
test_split(void)
{
	char host[64];
	uint16_t port = 0;

	ok(admin_split("0.0.0.0:15020", host, sizeof(host), &port) == 0 &&
	    strcmp(host, "0.0.0.0") == 0 && port == 15020, "v4 address");
	ok(admin_split("[::1]:9", host, sizeof(host), &port) == 0 &&
	    strcmp(host, "::1") == 0 && port == 9, "v6 address");
	ok(admin_split("localhost:80", host, sizeof(host), &port) == 0 &&
	    strcmp(host, "localhost") == 0, "a name");
	ok(admin_split("15020", host, sizeof(host), &port) == -1, "no host");
	ok(admin_split(":15020", host, sizeof(host), &port) == -1, "empty host");
	ok(admin_split("1.2.3.4:", host, sizeof(host), &port) == -1, "no port");
	ok(admin_split("1.2.3.4:70000", host, sizeof(host), &port) == -1,
	    "port out of range");
	ok(admin_split("1.2.3.4:80x", host, sizeof(host), &port) == -1,
	    "port not a number");
}

static void
test_ready(void)
{
	struct weft_admin_state st;
	struct weft_gen *g;
	char why[256], *err = NULL;
	bool installed = false;

	memset(&st, 0, sizeof(st));
	weft_gen_publish(NULL);
	ok(!weft_admin_ready(&st, why, sizeof(why)) &&
	    strstr(why, "table") != NULL, "no table: not ready (%s)", why);
	st.table_installed = &installed;
	ok(!weft_admin_ready(&st, why, sizeof(why)), "table not installed");
	installed = true;
	ok(!weft_admin_ready(&st, why, sizeof(why)) &&
	    strstr(why, "snapshot") != NULL, "no snapshot: not ready (%s)", why);

	g = weft_gen_build(snapshot(false), &err);
	ok(g != NULL, "generation without a CA");
	weft_gen_publish(g);
	ok(weft_admin_ready(&st, why, sizeof(why)) &&
	    strcmp(why, "ready: generation 9") == 0,
	    "no CA, no certificates needed: %s", why);

	g = weft_gen_build(snapshot(true), &err);
	weft_gen_publish(g);
	ok(!weft_admin_ready(&st, why, sizeof(why)) &&
	    strstr(why, "no certificate yet for spiffe://cluster.local/ns/") !=
	    NULL, "with a CA, local identities need certificates: %s", why);
	weft_gen_publish(NULL);
}

static void
test_observe(void)
{
	struct weft_metrics *m = weft_metrics_new(NULL, 1);
	struct weft_conn_ctx cx;
	struct weft_relay_config rc;
	struct weft_metrics_flow *f[2];
	struct sockaddr_storage client, vip, api1, api2;
	struct weft_gen *g;
	char *err = NULL, *text;

	weft_relay_config_defaults(&rc);
	weft_conn_ctx_init(&cx, NULL, 0, &rc);
	g = weft_gen_build(snapshot(true), &err);
	ok(g != NULL, "generation");
	sa("10.244.1.12", 40000, &client);
	sa("10.96.0.10", 80, &vip);
	sa("10.244.2.10", 8080, &api1);
	sa("10.244.1.11", 8080, &api2);

	ok(weft_observe_flow(&cx, g, WEFT_METRICS_OUTBOUND,
	    (struct sockaddr *)&client, NULL, NULL, (struct sockaddr *)&vip,
	    (struct sockaddr *)&api1) == NULL, "no shard: no flow");
	cx.cx_metrics = weft_metrics_shard(m, 0);

	/* client -> service api -> api-1 on another node: outbound only */
	weft_observe_conn(&cx, g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&client,
	    (struct sockaddr *)&vip, (struct sockaddr *)&api1, f);
	ok(f[0] != NULL && f[1] == NULL, "across nodes: one flow, outbound");
	weft_metrics_flow_request(cx.cx_metrics, f[0], 200, 0.001, NULL);
	weft_observe_conn_close(&cx, f, 10, 20);

	/* client -> api-2 on this node: both sides */
	weft_observe_conn(&cx, g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&client,
	    (struct sockaddr *)&api2, (struct sockaddr *)&api2, f);
	ok(f[0] != NULL && f[1] != NULL &&
	    weft_metrics_flow_side(f[1]) == WEFT_METRICS_INBOUND,
	    "same node: outbound and inbound flows");
	weft_metrics_flow_request(cx.cx_metrics, f[0], 503, 0.001, NULL);
	weft_metrics_flow_request(cx.cx_metrics, f[1], 503, 0.001, NULL);
	weft_observe_conn_close(&cx, f, 1, 2);

	/* the tunnel's server side: the certificate names the caller, the
	 * original source names its pod */
	f[0] = weft_observe_flow(&cx, g, WEFT_METRICS_INBOUND, NULL,
	    "10.244.1.12:40000", "spiffe://cluster.local/ns/tools/sa/client",
	    (struct sockaddr *)&api1, (struct sockaddr *)&api1);
	weft_metrics_flow_request(cx.cx_metrics, f[0], 403, 0.0001,
	    "no-traffic-target");
	weft_metrics_flow_close(cx.cx_metrics, f[0], 5, 6);
	/* a pod address that is not the certificate's is not believed */
	f[0] = weft_observe_flow(&cx, g, WEFT_METRICS_INBOUND, NULL,
	    "10.244.1.11:1", "spiffe://cluster.local/ns/tools/sa/client",
	    (struct sockaddr *)&api1, (struct sockaddr *)&api1);
	weft_metrics_flow_request(cx.cx_metrics, f[0], 200, 0.001, NULL);
	weft_metrics_flow_close(cx.cx_metrics, f[0], 0, 0);

	text = expose(m);
	ok(strstr(text, "weft_requests_total{direction=\"outbound\","
	    "source_namespace=\"tools\",source_service_account=\"client\","
	    "destination_namespace=\"shop\",destination_service_account=\"api\","
	    "destination_service=\"api\",status_code=\"200\"} 1\n") != NULL,
	    "outbound via the service: labels from the generation");
	ok(strstr(text, "weft_requests_total{direction=\"inbound\","
	    "source_namespace=\"tools\",source_service_account=\"client\","
	    "destination_namespace=\"shop\",destination_service_account=\"api\","
	    "destination_service=\"unknown\",status_code=\"503\"} 1\n") != NULL,
	    "same node, called by pod address: inbound too");
	ok(strstr(text, "weft_policy_denials_total{direction=\"inbound\","
	    "source_namespace=\"tools\",source_service_account=\"client\","
	    "destination_namespace=\"shop\",destination_service_account=\"api\","
	    "destination_service=\"unknown\",reason=\"no-traffic-target\"} 1\n")
	    != NULL, "tunnel server side: identity from the certificate");
	ok(strstr(text, "weft_tcp_connections_opened_total{direction="
	    "\"inbound\",source_namespace=\"tools\",source_service_account="
	    "\"client\",destination_namespace=\"shop\","
	    "destination_service_account=\"api\",destination_service="
	    "\"unknown\"} 3\n") != NULL, "three inbound connections");
	ok(strstr(text, "weft_tcp_received_bytes_total{direction=\"outbound\","
	    "source_namespace=\"tools\",source_service_account=\"client\","
	    "destination_namespace=\"shop\",destination_service_account=\"api\","
	    "destination_service=\"api\"} 20\n") != NULL, "bytes at close");
	free(text);
	{
		size_t n;
		char *json = weft_metrics_edges_delta(m, "node-1", &n);

		ok(json != NULL && strstr(json, "\"src\":{\"namespace\":\"tools\","
		    "\"serviceAccount\":\"client\",\"pod\":\"client\"},\"dst\":"
		    "{\"namespace\":\"shop\",\"serviceAccount\":\"api\",\"pod\":"
		    "\"api-1\"}") != NULL, "edges name both pods");
		ok(json != NULL && strstr(json, "\"pod\":\"\"},\"dst\"") != NULL,
		    "a source address of another identity: no pod");
		free(json);
	}
	weft_gen_unref(g);
	weft_metrics_free(m);
}

int
main(void)
{
	test_split();
	test_ready();
	test_observe();
	weft_certstore_clear();
	return tap_done();
}
