# node/: the daemon
libweft_a_SOURCES += node/gen.c node/node.c node/client.c node/client.h
check_PROGRAMS += test/unit/node/gen
test_unit_node_gen_SOURCES = test/unit/node/gen.c
test_unit_node_gen_LDADD = $(WEFT_LIBS)
