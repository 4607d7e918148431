# proxy/: listeners, workers, connections
libweft_a_SOURCES += proxy/worker.c proxy/listener.c proxy/conn.c \
	proxy/decide.c proxy/tls.c proxy/tunnel.c proxy/proxy-int.h

check_PROGRAMS += test/unit/proxy/conn
test_unit_proxy_conn_SOURCES = test/unit/proxy/conn.c
test_unit_proxy_conn_LDADD = $(WEFT_LIBS)

check_PROGRAMS += test/unit/proxy/tunnel
test_unit_proxy_tunnel_SOURCES = test/unit/proxy/tunnel.c
test_unit_proxy_tunnel_LDADD = $(WEFT_LIBS)
