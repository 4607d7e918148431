/* The node daemon (`weft node`). */
#ifndef WEFT_NODE_H
#define WEFT_NODE_H

struct weft_gen;
struct weft_nft_config;

/* Entry point of `weft node`; argv[0] is "node".  Returns the exit code. */
int	weft_node_main(int argc, char **argv);

/* Derive the desired table state from a generation: this node's CIDRs and
 * its local pods, meshed or exempt, sorted.  Returns 0, or -1 on allocation
 * failure.  Free with weft_node_nft_config_free(). */
int	weft_node_nft_config(const struct weft_gen *g, const char *iface_prefix,
	    struct weft_nft_config *out);
void	weft_node_nft_config_free(struct weft_nft_config *cfg);

#endif
