# common/: code both daemons need (logging, addresses, SPIFFE IDs, the
# snapshot wire format)
libweft_a_SOURCES += common/log.c common/ip.c common/snapshot.c common/spiffe.c
