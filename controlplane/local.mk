# controlplane/: controller, sources, snapshots, ctl
libweft_a_SOURCES += controlplane/manifest.c controlplane/objects.c \
	controlplane/model.c controlplane/model.h controlplane/source_dir.c \
	controlplane/ca.c controlplane/controller.c controlplane/ctl.c

check_PROGRAMS += test/unit/controlplane/manifest test/unit/common/snapshot \
	test/unit/common/spiffe test/unit/controlplane/ca
test_unit_controlplane_manifest_SOURCES = test/unit/controlplane/manifest.c
test_unit_controlplane_manifest_CPPFLAGS = $(AM_CPPFLAGS) \
	-DTEST_DATADIR='"$(abs_top_srcdir)/test/unit/controlplane/data"'
test_unit_controlplane_manifest_LDADD = $(WEFT_LIBS)
test_unit_common_snapshot_SOURCES = test/unit/common/snapshot.c
test_unit_common_snapshot_LDADD = $(WEFT_LIBS)
test_unit_common_spiffe_SOURCES = test/unit/common/spiffe.c
test_unit_common_spiffe_LDADD = $(WEFT_LIBS)
test_unit_controlplane_ca_SOURCES = test/unit/controlplane/ca.c
test_unit_controlplane_ca_LDADD = $(WEFT_LIBS)

# the API over TLS with curl and openssl (skipped without them)
TESTS += test/unit/controlplane/tls.sh
EXTRA_DIST += test/unit/controlplane/tls.sh

EXTRA_DIST += test/unit/controlplane/data/multi.yaml \
	test/unit/controlplane/data/objects.json \
	test/unit/controlplane/data/list.yaml \
	test/unit/controlplane/data/pods.yaml \
	test/unit/controlplane/data/svc.yaml \
	test/unit/controlplane/data/nodes.yaml \
	test/unit/controlplane/data/ns.yaml \
	test/unit/controlplane/data/syntax.yaml \
	test/unit/controlplane/data/dup.yaml
