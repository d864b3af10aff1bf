/* cmd_webhooks.c — `difftune webhooks secret [--data-dir DIR]`: the secret the server signs job
 * webhooks with (server/webhook_sign.h), for the receivers that verify them.
 *
 * Prints only the secret on stdout ("whsec_" and base64), so SECRET=$(difftune webhooks secret)
 * works; makes it first when the data directory has none yet (the server would make the same
 * file at its first delivery; whichever comes first, both then use it). Exit status: 0 success,
 * 1 the secret could not be read or made, 2 bad command line.
 */
#include "cli.h"
#include "fsutil.h"
#include "webhook_sign.h"

#include <stdio.h>
#include <string.h>

static const char cmd_webhooks_usage[] =
    "usage: difftune webhooks secret [--data-dir DIR]\n"
    "\n"
    "Prints the secret the server signs job webhooks with (Standard Webhooks: \"whsec_\" and the\n"
    "base64 of the HMAC-SHA256 key), alone on stdout, so SECRET=$(difftune webhooks secret)\n"
    "captures it. One secret per data directory, kept in DIR/webhook.secret (mode 0600) and made\n"
    "on first need, here or by the server. To change it, stop the server, remove the file and\n"
    "start the server again.\n"
    "\n"
    "options:\n"
    "  --data-dir DIR   the server's data directory (default $DIFFTUNE_DATA_DIR, else\n"
    "                   ./difftune-data); created if missing\n"
    "  -h, --help       show this help\n";

int cmd_webhooks(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(cmd_webhooks_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "secret") != 0) {
        fprintf(stderr, "difftune webhooks: unknown command '%s'\n\n%s", argv[1], cmd_webhooks_usage);
        return 2;
    }
    const char *dir = cli_default_data_dir();
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd_webhooks_usage, stdout);
            return 0;
        }
        if ((m = cli_match_opt(argc, argv, &i, "--data-dir", &v, "difftune webhooks secret")) != 0) {
            if (m < 0) return 2;
            dir = v;
        } else {
            fprintf(stderr, "difftune webhooks secret: unknown argument '%s'\n\n%s", argv[i],
                    cmd_webhooks_usage);
            return 2;
        }
    }
    char err[1024], secret[WEBHOOK_SECRET_TEXT_MAX];
    int created = 0;
    if (fs_mkdirs(dir, err, sizeof err)) {
        fprintf(stderr, "difftune webhooks secret: --data-dir: %s\n", err);
        return 1;
    }
    if (webhook_secret_load(dir, secret, sizeof secret, NULL, &created, err, sizeof err)) {
        fprintf(stderr, "difftune webhooks secret: %s\n", err);
        return 1;
    }
    printf("%s\n", secret);
    if (created)
        fprintf(stderr, "difftune webhooks secret: made %s/%s (give it to your webhook receivers)\n",
                dir, WEBHOOK_SECRET_FILE);
    memset(secret, 0, sizeof secret);
    return fflush(stdout) == 0 ? 0 : 1;
}
