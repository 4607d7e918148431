# node/: the daemon
libweft_a_SOURCES += node/gen.c
