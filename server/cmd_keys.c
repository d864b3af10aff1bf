/* cmd_keys.c — `difftune keys ...`: the API keys of a data directory, managed on the machine
 * that holds it (the server may be running: the store is SQLite in WAL mode).
 *
 *   difftune keys create --scope read|submit|admin [--name NAME] [--data-dir DIR]
 *   difftune keys list [--data-dir DIR] [--json]
 *   difftune keys revoke ID [--data-dir DIR]
 *
 * create prints only the secret on stdout (KEY=$(difftune keys create --scope read) works) and
 * says on stderr what it made; the store keeps only the secret's SHA-256, so the secret is never
 * shown again. Exit status: 0 success, 1 the work failed (no such key, no store, I/O), 2 bad
 * command line.
 */
#include "cli.h"
#include "fsutil.h"
#include "layout.h"
#include "store.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char cmd_keys_usage[] =
    "usage: difftune keys <command> [options]\n"
    "\n"
    "API keys of the server's data directory. A key has a scope: read (every GET), submit (+ create,\n"
    "cancel and retry jobs, upload datasets and models) or admin (+ delete datasets and models).\n"
    "\n"
    "commands:\n"
    "  create   make a key and print its secret (shown this once only)\n"
    "  list     show every key: id, scope, name, when created and revoked (never a secret)\n"
    "  revoke   stop a key from working, at once, also on a running server\n"
    "\n"
    "Run 'difftune keys <command> --help' for the options of a command.\n";

static const char cmd_keys_create_usage[] =
    "usage: difftune keys create --scope read|submit|admin [--name NAME] [--data-dir DIR]\n"
    "\n"
    "Makes a key and prints its secret (\"dtk_\" and 64 hex digits) alone on stdout, so that\n"
    "KEY=$(difftune keys create --scope read) captures it; the store keeps only its SHA-256, so\n"
    "store the secret now. The data directory is created if missing, so keys can be made before\n"
    "the server first starts.\n"
    "\n"
    "options:\n"
    "  --scope S        read, submit or admin (required)\n"
    "  --name NAME      a label to tell keys apart in listings (default none)\n"
    "  --data-dir DIR   the server's data directory (default $DIFFTUNE_DATA_DIR, else\n"
    "                   ./difftune-data)\n"
    "  -h, --help       show this help\n";

static const char cmd_keys_list_usage[] =
    "usage: difftune keys list [--data-dir DIR] [--json]\n"
    "\n"
    "Shows every key of the data directory, newest first: id, scope, name, created and revoked\n"
    "(UTC; \"-\" while active). Secrets are not stored, so none is shown.\n"
    "\n"
    "options:\n"
    "  --data-dir DIR   the server's data directory (default $DIFFTUNE_DATA_DIR, else\n"
    "                   ./difftune-data)\n"
    "  --json           print {\"data\":[{\"id\",\"object\",\"name\",\"scope\",\"created_at\",\n"
    "                   \"revoked_at\"}...]} (unix seconds; revoked_at null while active)\n"
    "  -h, --help       show this help\n";

static const char cmd_keys_revoke_usage[] =
    "usage: difftune keys revoke ID [--data-dir DIR]\n"
    "\n"
    "Revokes the key ID (key_..., as `difftune keys list` shows): requests with it are refused from\n"
    "then on, also by a running server. Revoking a revoked key changes nothing.\n"
    "\n"
    "options:\n"
    "  --data-dir DIR   the server's data directory (default $DIFFTUNE_DATA_DIR, else\n"
    "                   ./difftune-data)\n"
    "  -h, --help       show this help\n";

/* A bad command line: the problem and the subcommand's usage on stderr, exit status 2. */
static int keys_bad(const char *sub, const char *usage, const char *fmt, const char *what) {
    fprintf(stderr, "difftune keys %s: ", sub);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n\n%s", usage);
    return 2;
}

/* Opens DIR/difftune.db. With create, DIR is made when missing; without, a missing store is an
 * error (a mistyped --data-dir should not look like a directory without keys). Returns 0, or 1
 * after saying why. */
static int keys_open(const char *sub, const char *dir, int create, dt_store **out) {
    char err[1024], path[PATH_MAX + 64];
    *out = NULL;
    if (create && fs_mkdirs(dir, err, sizeof err)) {
        fprintf(stderr, "difftune keys %s: --data-dir: %s\n", sub, err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, DT_LAYOUT_DB);
    if (!create && !fs_exists(path)) {
        fprintf(stderr, "difftune keys %s: no store at %s (is --data-dir right? `difftune keys "
                "create` or `difftune serve` makes one)\n", sub, path);
        return 1;
    }
    if (store_open(path, NULL, out, err, sizeof err)) {
        fprintf(stderr, "difftune keys %s: cannot open the store %s: %s\n", sub, path, err);
        return 1;
    }
    return 0;
}

static int keys_create(int argc, char **argv) {
    const char *scope_name = NULL, *name = NULL, *dir = cli_default_data_dir();
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd_keys_create_usage, stdout);
            return 0;
        }
        if ((m = cli_match_opt(argc, argv, &i, "--scope", &v, "difftune keys create")) != 0) {
            if (m < 0) return 2;
            scope_name = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--name", &v, "difftune keys create")) != 0) {
            if (m < 0) return 2;
            name = v;
        } else if ((m = cli_match_opt(argc, argv, &i, "--data-dir", &v, "difftune keys create")) != 0) {
            if (m < 0) return 2;
            if (!*v) return keys_bad("create", cmd_keys_create_usage, "--data-dir needs a folder%s", "");
            dir = v;
        } else if (argv[i][0] == '-') {
            return keys_bad("create", cmd_keys_create_usage, "unknown option '%s'", argv[i]);
        } else {
            return keys_bad("create", cmd_keys_create_usage, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!scope_name)
        return keys_bad("create", cmd_keys_create_usage, "--scope is required (read, submit or admin)%s", "");
    dt_scope scope;
    if (store_scope_parse(scope_name, &scope)) {
        fprintf(stderr, "difftune keys create: unknown scope '%s': read, submit or admin\n", scope_name);
        return 2;
    }

    char secret[DT_KEY_SECRET_MAX], hash[DT_KEY_HASH_HEX], id[DT_STORE_ID_MAX], err[1024];
    if (store_key_generate(secret)) {
        fprintf(stderr, "difftune keys create: the system's random source failed\n");
        return 1;
    }
    store_key_hash(secret, hash);
    dt_store *s;
    if (keys_open("create", dir, 1, &s)) return 1;
    int rc = store_key_create(s, name, scope, hash, id, err, sizeof err);
    if (rc) {
        store_close(s);
        /* scope and hash are checked above, so only the name can be invalid */
        fprintf(stderr, "difftune keys create: %s%s\n", rc == DT_STORE_INVALID ? "--name: " : "", err);
        return rc == DT_STORE_INVALID ? 2 : 1;
    }
    printf("%s\n", secret);
    if (fflush(stdout) || ferror(stdout)) {
        /* the secret did not reach its reader: a key nobody holds must not stay valid */
        rc = store_key_revoke(s, id, err, sizeof err);
        store_close(s);
        fprintf(stderr, "difftune keys create: cannot write the secret to stdout; %s %s\n",
                rc ? "revoke the key with `difftune keys revoke`:" : "revoked the new key", id);
        return 1;
    }
    store_close(s);
    fprintf(stderr, "created key %s (scope %s): store the secret now, it is not shown again\n", id,
            store_scope_name(scope));
    return 0;
}

/* Unix seconds as "2025-01-31T12:00:00Z". */
static void keys_time(json_t *t, char *out, size_t len) {
    if (!json_is_number(t)) {
        snprintf(out, len, "-");
        return;
    }
    time_t sec = (time_t)json_number_value(t);
    struct tm tm;
    if (!gmtime_r(&sec, &tm) || !strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, len, "%.0f", json_number_value(t));
}

static int keys_print_table(json_t *list) {
    json_t *data = json_object_get(list, "data"), *k;
    size_t i;
    if (!json_array_size(data)) {
        printf("no keys\n");
        return 0;
    }
    int name_w = 4;
    json_array_foreach(data, i, k) {
        const char *name = json_string_value(json_object_get(k, "name"));
        int n = name ? (int)strlen(name) : 0;
        if (n > name_w) name_w = n;
    }
    printf("%-28s  %-6s  %-*s  %-20s  %s\n", "ID", "SCOPE", name_w, "NAME", "CREATED", "REVOKED");
    json_array_foreach(data, i, k) {
        const char *name = json_string_value(json_object_get(k, "name"));
        char created[32], revoked[32];
        keys_time(json_object_get(k, "created_at"), created, sizeof created);
        keys_time(json_object_get(k, "revoked_at"), revoked, sizeof revoked);
        printf("%-28s  %-6s  %-*s  %-20s  %s\n", json_string_value(json_object_get(k, "id")),
               json_string_value(json_object_get(k, "scope")), name_w, name && name[0] ? name : "-",
               created, revoked);
    }
    return 0;
}

static int keys_list(int argc, char **argv) {
    const char *dir = cli_default_data_dir();
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd_keys_list_usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            as_json = 1;
        } else if ((m = cli_match_opt(argc, argv, &i, "--data-dir", &v, "difftune keys list")) != 0) {
            if (m < 0) return 2;
            if (!*v) return keys_bad("list", cmd_keys_list_usage, "--data-dir needs a folder%s", "");
            dir = v;
        } else if (argv[i][0] == '-') {
            return keys_bad("list", cmd_keys_list_usage, "unknown option '%s'", argv[i]);
        } else {
            return keys_bad("list", cmd_keys_list_usage, "unexpected argument '%s'", argv[i]);
        }
    }
    dt_store *s;
    if (keys_open("list", dir, 0, &s)) return 1;
    json_t *list = NULL;
    char err[1024];
    int rc = store_key_list(s, &list, err, sizeof err);
    store_close(s);
    if (rc) {
        fprintf(stderr, "difftune keys list: %s\n", err);
        return 1;
    }
    if (as_json) {
        char *text = json_dumps(list, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16));
        if (text) printf("%s\n", text);
        free(text);
        if (!text) {
            json_decref(list);
            fprintf(stderr, "difftune keys list: out of memory\n");
            return 1;
        }
    } else {
        keys_print_table(list);
    }
    json_decref(list);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int keys_revoke(int argc, char **argv) {
    const char *dir = cli_default_data_dir(), *id = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd_keys_revoke_usage, stdout);
            return 0;
        }
        if ((m = cli_match_opt(argc, argv, &i, "--data-dir", &v, "difftune keys revoke")) != 0) {
            if (m < 0) return 2;
            if (!*v) return keys_bad("revoke", cmd_keys_revoke_usage, "--data-dir needs a folder%s", "");
            dir = v;
        } else if (argv[i][0] == '-') {
            return keys_bad("revoke", cmd_keys_revoke_usage, "unknown option '%s'", argv[i]);
        } else if (id) {
            return keys_bad("revoke", cmd_keys_revoke_usage, "unexpected argument '%s' (one ID only)",
                            argv[i]);
        } else {
            id = argv[i];
        }
    }
    if (!id) return keys_bad("revoke", cmd_keys_revoke_usage, "the key's ID is required%s", "");
    dt_store *s;
    if (keys_open("revoke", dir, 0, &s)) return 1;
    char err[1024];
    dt_scope scope;
    /* only to say whether this call did it: revoking twice is harmless */
    int was_active = store_key_scope(s, id, &scope, err, sizeof err) == DT_STORE_OK;
    int rc = store_key_revoke(s, id, err, sizeof err);
    store_close(s);
    if (rc) {
        fprintf(stderr, "difftune keys revoke: %s\n", err);
        return 1;
    }
    printf("revoked %s%s\n", id, was_active ? "" : " (it was already revoked)");
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Entry point of `difftune keys` (argv[0] == "keys"). Returns the process exit status: 0
 * success, 1 failure of the work itself, 2 bad arguments. */
int cmd_keys(int argc, char **argv) {
    if (argc < 2) {
        fputs(cmd_keys_usage, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        fputs(cmd_keys_usage, stdout);
        return 0;
    }
    if (!strcmp(sub, "create")) return keys_create(argc - 1, argv + 1);
    if (!strcmp(sub, "list")) return keys_list(argc - 1, argv + 1);
    if (!strcmp(sub, "revoke")) return keys_revoke(argc - 1, argv + 1);
    fprintf(stderr, "difftune keys: unknown command '%s'\n\n%s", sub, cmd_keys_usage);
    return 2;
}
