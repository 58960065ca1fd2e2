/* main.c - the racecheck command line.
 *
 *   racecheck run [options] FILE          run a scenario file (also: racecheck FILE)
 *   racecheck burst [options] URL         fire one synchronised burst
 *   racecheck bench [options] URL         closed-model throughput
 *   racecheck check FILE                  validate a scenario file
 *
 * Exit status: 0 every check held, 1 a check failed, 2 bad usage or
 * scenario file, 3 the target could not be reached.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

static void rc__usage(FILE *f) {
  fputs("usage: racecheck run [options] FILE\n"
        "       racecheck burst [options] URL\n"
        "       racecheck bench [options] URL\n"
        "       racecheck check FILE\n"
        "       racecheck --version\n"
        "\n"
        "run options:\n"
        "  --target URL        override config.target\n"
        "  -t, --threads N     worker threads (default: cores)\n"
        "  -o, --output FILE   write report.json\n"
        "      --html FILE     write a self-contained HTML report\n"
        "      --history FILE  record every request (JSON lines, invoke/complete)\n"
        "  -v, --var K=V       set a variable (repeatable)\n"
        "  -e, --environment E use config.environments.E (Artillery's -e)\n"
        "      --overrides JSON merge a JSON object over the file (Artillery's)\n"
        "      --seed N        replay the random values of a run (default: a fresh seed,\n"
        "                      printed at the end)\n"
        "  -q, --quiet         no live line and no summary\n"
        "      --verbose       print the log steps of every virtual user\n"
        "burst options (plus -t, -o, --html, --history, -q):\n"
        "  -n N                connections (= requests per round), default 10\n"
        "  -r, --repeat R      rounds, default 1\n"
        "  -X METHOD  -H 'Name: value'  --json BODY  -d BODY\n"
        "  --expect EXPR       an invariant over the tallies, e.g. 'status[201] == 1'\n"
        "  --timeout DUR       request time-out (default 10s)\n"
        "bench options:\n"
        "  -c N  connections (64)   -d DUR duration (10s)   -t N threads (cores)\n"
        "  -X METHOD  -H 'Name: value'  -d/--data BODY  --json BODY  --timeout DUR\n"
        "  -o FILE, --html FILE, -q\n"
        "See docs/racecheck.md for the scenario file format.\n",
        f);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    rc__usage(stderr);
    return RC_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    rc__usage(stdout);
    return RC_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("racecheck " RC_VERSION "\n");
    return RC_EXIT_OK;
  }
  if (strcmp(cmd, "bench") == 0) {
    return rc_cli_bench(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "burst") == 0) {
    return rc_cli_burst(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "run") == 0) {
    return rc_cli_run(argc - 1, argv + 1, 0);
  }
  if (strcmp(cmd, "check") == 0) {
    return rc_cli_run(argc - 1, argv + 1, 1);
  }
  if (cmd[0] != '-' && access(cmd, R_OK) == 0) {
    return rc_cli_run(argc, argv, 0); /* racecheck FILE */
  }
  fprintf(stderr, "racecheck: unknown command '%s'\n", cmd);
  rc__usage(stderr);
  return RC_EXIT_USAGE;
}
