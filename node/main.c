/* weft: one binary, one subcommand per process kind (DESIGN §1). */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <json-c/json.h>
#include <openssl/opensslv.h>

#include "weft/controller.h"
#include "weft/node.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: weft COMMAND [OPTIONS]\n"
	    "\n"
	    "commands:\n"
	    "  node        run the node daemon: capture, mTLS, policy, metrics\n"
	    "  controller  run the controller: sources, identities, snapshots\n"
	    "  ctl         inspect and operate a running mesh\n"
	    "  version     print the version and the libraries in use\n"
	    "\n"
	    "Run 'weft COMMAND --help' for a command's options.\n");
}

static int
version_main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		printf("usage: weft version\n\n"
		    "Print weft's version and the versions of the libraries "
		    "it runs with.\n");
		return 0;
	}
	printf("weft %s\n", PACKAGE_VERSION);
	printf("libevent %s, %s, json-c %s\n", event_get_version(),
	    OPENSSL_VERSION_TEXT, json_c_version());
	return 0;
}

int
main(int argc, char **argv)
{
	/* A peer closing under a write must never kill the daemon. */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	argc--;
	argv++;
	if (strcmp(argv[0], "node") == 0)
		return weft_node_main(argc, argv);
	if (strcmp(argv[0], "controller") == 0)
		return weft_controller_main(argc, argv);
	if (strcmp(argv[0], "ctl") == 0)
		return weft_ctl_main(argc, argv);
	if (strcmp(argv[0], "version") == 0 || strcmp(argv[0], "--version") == 0)
		return version_main(argc, argv);
	if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
	    strcmp(argv[0], "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "weft: unknown command '%s'\n\n", argv[0]);
	usage(stderr);
	return 2;
}
