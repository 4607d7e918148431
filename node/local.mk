# node/: the daemon
libweft_a_SOURCES += node/gen.c node/node.c node/client.c node/client.h \
	node/certstore.c node/identity.c node/identity.h
check_PROGRAMS += test/unit/node/gen
test_unit_node_gen_SOURCES = test/unit/node/gen.c
test_unit_node_gen_LDADD = $(WEFT_LIBS)
check_PROGRAMS += test/unit/node/identity
test_unit_node_identity_SOURCES = test/unit/node/identity.c
test_unit_node_identity_LDADD = $(WEFT_LIBS)
