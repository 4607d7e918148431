# test/: the lab's workload and shared test files

# The lab's test workload (deploy/local/weft-lab puts it on the pods' PATH);
# installed next to weft and weft-lab so an installed lab finds it.
bin_PROGRAMS += weft-echo
weft_echo_SOURCES = test/workload/weft-echo.c
weft_echo_LDADD = $(WEFT_LIBS)

# Integration tests (root, network namespaces): `make check-integration`.
EXTRA_DIST += test/integration/run test/integration/lib.sh \
	test/integration/t-lab.sh test/integration/t-relay.sh \
	test/integration/t-halfclose.sh test/integration/t-bulk.sh \
	test/integration/t-failclosed.sh test/integration/t-golden-nft.sh \
	test/integration/t-resilience.sh test/integration/t-antispoof.sh \
	test/integration/t-identity.sh test/integration/t-tunnel.sh \
	test/integration/golden

# The lab is installed too (DESIGN §9).
dist_bin_SCRIPTS += deploy/local/weft-lab
