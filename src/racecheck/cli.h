/* cli.h - the subcommands of racecheck (argument parsing and output). Each
 * returns the process exit status. argv[0] is the subcommand name. */
#ifndef RC_CLI_H
#define RC_CLI_H

int rc_cli_bench(int argc, char **argv);
int rc_cli_burst(int argc, char **argv);
/* check_only: load and validate the file, run nothing. */
int rc_cli_run(int argc, char **argv, int check_only);

#endif /* RC_CLI_H */
