/* weft: one binary, several subcommands. */
#include "config.h"

#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
	(void)argc; (void)argv;
	printf("weft %s\n", PACKAGE_VERSION);
	return 0;
}
