# netfilter/: the only code that talks nftables and rtnetlink
libweft_a_SOURCES += netfilter/nft-int.h netfilter/mnl.c netfilter/table.c \
	netfilter/counters.c netfilter/monitor.c netfilter/route.c

check_PROGRAMS += test/unit/netfilter/table
test_unit_netfilter_table_SOURCES = test/unit/netfilter/table.c
test_unit_netfilter_table_LDADD = $(WEFT_LIBS)

# Root only, in throwaway network namespaces: test/integration/t-nft-smoke.sh (run by test/integration/run)
EXTRA_DIST += test/integration/t-nft-smoke.sh

# Driver of the API for the root smoke test (not run by make check).
noinst_PROGRAMS += test/unit/netfilter/nft-driver
test_unit_netfilter_nft_driver_SOURCES = test/unit/netfilter/nft-driver.c
test_unit_netfilter_nft_driver_LDADD = $(WEFT_LIBS)
