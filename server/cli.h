/* cli.h — the difftune subcommands and the small argument helpers they share. */
#ifndef DT_CLI_H
#define DT_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Each subcommand gets argv[0] = its own name and returns the process exit status:
 * 0 success, 1 failure while working, 2 bad usage or input rejected, 3 stopped on request. */
int cmd_serve(int argc, char **argv);
int cmd_run_job(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_classifier(int argc, char **argv);
int cmd_fid(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_forgetting(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_webhooks(int argc, char **argv);

/* --min-free-mb of serve, run-job and train: MiB that checkpoint writes and uploads leave free
 * on the file system (the free-space guard; README: Faults). */
#define DT_MIN_FREE_MB_DEFAULT 1024
#define DT_MIN_FREE_MB_MAX (1L << 30)

/* Strict integer / number parsing of a whole string ("12abc" fails). Return 0 or -1. */
/* Matches "--name value" and "--name=value" at argv[*i]; advances *i past what it consumed.
 * Returns 1 on a match with *val set, 0 when argv[*i] is another option, -1 when the value is
 * missing (a message starting with `cmd`, e.g. "difftune dataset", is printed). */
int cli_match_opt(int argc, char **argv, int *i, const char *name, const char **val, const char *cmd);
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_double(const char *s, double *out);
/* Reads a whole file into a NUL-terminated heap buffer (*len bytes). NULL on failure. */
char *cli_read_file(const char *path, size_t *len);
/* cli_latent.c: where the samples of a DiT checkpoint (in_channels x image_size^2 inputs) live.
 * With vae_path (a VAE file; NULL = none) they are latents, decoded by that VAE into images of
 * *pixels = image_size x its downsampling: only the file's header is read, and its latent
 * channels must be in_channels. Without one the DiT must take images (1 or 3 channels; *pixels
 * = 0). Returns 0, or -1 after printing a message that starts with cmd (e.g. "difftune fid") and
 * names --vae (the caller exits 2). */
int cli_latent_pixels(const char *cmd, const char *vae_path, int in_channels, int image_size,
                      int *pixels);
/* The data directory when no --data-dir is given: $DIFFTUNE_DATA_DIR when set and not empty,
 * else "difftune-data" (relative to the working directory). Used by serve and keys alike. */
const char *cli_default_data_dir(void);

#endif
