#!/bin/bash
# node-1's table for the example cluster, normalised (counters zeroed,
# handles stripped), equals test/integration/golden/example-node-1.nft.
# WEFT_UPDATE_GOLDEN=1 rewrites the golden file from this run instead.
#
#   node-1: shop/web 10.244.1.10, shop/api-2 10.244.1.11, tools/client 10.244.1.12
#   node-2: shop/api-1 10.244.2.10, legacy/old 10.244.2.11 (namespace outside the mesh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init gold
trap cleanup EXIT
golden=$IT_DIR/golden/example-node-1.nft
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml"
it_tmp

nft_table node-1 | nft_normalise >"$IT_TMP/node-1.nft"
if [[ ${WEFT_UPDATE_GOLDEN:-0} == 1 ]]; then
	cp "$IT_TMP/node-1.nft" "$golden"
	pretty "wrote $golden"
	exit 0
fi
[[ -f $golden ]] || fail "no $golden: run with WEFT_UPDATE_GOLDEN=1 to create it"
diff -u "$golden" "$IT_TMP/node-1.nft" >&2 ||
	fail "node-1's table differs from $golden (WEFT_UPDATE_GOLDEN=1 to accept)"
pretty "ok"
