/* fuzz_ingest.c — dataset upload ingestion (api/ingest_archive.c and api/ingest_dataset.c:
 * ingest_dataset, what POST /datasets runs) on arbitrary upload bytes.
 *
 * Each input is written to an upload file in the process's scratch folder and extracted into a
 * fresh destination below it (SCRATCH/run/dest), which is removed afterwards. Checked besides
 * the sanitizers:
 *   - nothing is ever created outside the destination: every mkdir and open the library makes
 *     goes through the wrappers below (the link uses --wrap), which abort on a path that is not
 *     under it or has a ".." component; and after the call the scratch folder holds only the
 *     upload and the destination (nothing escaped by any other route);
 *   - a refusal removes the destination and has a message, which never names the server's
 *     folders (ingest.h promises archive member names only); an accepted dataset has images,
 *     classes, a class name and count for every class, and its root inside the destination;
 *   - no symbolic link, device or FIFO exists under the destination.
 * Limits are small (8 MiB, 2000 members) so that bombs are stopped quickly.
 */
#include "fuzz_util.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "ingest.h"

static const char *fuzz_guard_root; /* while set: the only folder creations may happen in */

/* Aborts unless path is fuzz_guard_root, lies below it, or (for mkdir, which ingest uses to make
 * the destination's parents, mkdir -p style) is one of its ancestors; and has no ".." component. */
static void fuzz_guard(const char *what, const char *path, int ancestors_ok) {
    if (!fuzz_guard_root) return;
    size_t n = strlen(fuzz_guard_root), m = strlen(path);
    int inside = !strncmp(path, fuzz_guard_root, n) && (path[n] == '/' || path[n] == '\0');
    if (ancestors_ok && m < n && !strncmp(path, fuzz_guard_root, m) && fuzz_guard_root[m] == '/')
        inside = 1;
    int dotdot = 0;
    for (const char *p = path; *p; p++)
        if (p[0] == '.' && p[1] == '.' && (p == path || p[-1] == '/') && (p[2] == '/' || !p[2]))
            dotdot = 1;
    FUZZ_CHECK(inside && !dotdot, "%s outside %s: '%s'", what, fuzz_guard_root, path);
}

int __real_mkdir(const char *path, mode_t mode);
int __wrap_mkdir(const char *path, mode_t mode) {
    fuzz_guard("mkdir", path, 1);
    return __real_mkdir(path, mode);
}

int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (flags & (O_CREAT | O_WRONLY | O_RDWR | O_TRUNC)) fuzz_guard("open for writing", path, 0);
    return __real_open(path, flags, mode);
}

/* Counts the entries of dir; aborts on a link, device, FIFO or socket below it. */
static int fuzz_ingest_walk(const char *dir, int depth) {
    DIR *d = opendir(dir);
    FUZZ_CHECK(d != NULL, "cannot list %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        FUZZ_CHECK(lstat(path, &sb) == 0, "lstat %s", path);
        FUZZ_CHECK(S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode), "%s is neither file nor folder", path);
        n++;
        if (S_ISDIR(sb.st_mode) && depth < 64) n += fuzz_ingest_walk(path, depth + 1);
    }
    closedir(d);
    return n;
}

/* 1 when dir holds nothing but a and b (b may be NULL); prints each other entry. */
static int fuzz_ingest_only(const char *dir, const char *a, const char *b) {
    DIR *d = opendir(dir);
    FUZZ_CHECK(d != NULL, "cannot list %s", dir);
    int ok = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (strcmp(s, ".") && strcmp(s, "..") && strcmp(s, a) && (!b || strcmp(s, b))) {
            fprintf(stderr, "unexpected entry %s/%s\n", dir, s);
            ok = 0;
        }
    }
    closedir(d);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *root = fuzz_scratch();
    char upload[600], run[600], dest[700];
    snprintf(upload, sizeof upload, "%s/upload", root);
    snprintf(run, sizeof run, "%s/run", root);
    snprintf(dest, sizeof dest, "%s/dest", run);
    fuzz_remove_tree(run);
    fuzz_write_file(upload, data, size);

    const dt_ingest_limits limits = {.max_bytes = 8 << 20, .max_entries = 2000};
    dt_ingest_dataset out;
    char err[1024];
    fuzz_guard_root = run; /* ingest_dataset creates dest (and its parent run/) itself */
    int rc = ingest_dataset(upload, dest, &limits, &out, err, sizeof err);
    fuzz_guard_root = NULL;

    FUZZ_CHECK(fuzz_ingest_only(root, "upload", "run"), "something was written beside the upload");
    struct stat sb;
    if (rc == DT_INGEST_OK) {
        FUZZ_CHECK(fuzz_ingest_only(run, "dest", NULL), "something was written beside dest");
        FUZZ_CHECK(out.images >= 1 && out.classes >= 1, "%lld images, %lld classes",
                   (long long)out.images, (long long)out.classes);
        FUZZ_CHECK(json_array_size(out.class_names) == (size_t)out.classes &&
                       json_array_size(out.class_counts) == (size_t)out.classes,
                   "class arrays");
        FUZZ_CHECK(!strncmp(out.root, dest, strlen(dest)), "root %s outside %s", out.root, dest);
        FUZZ_CHECK(!strcmp(out.format, "idx") || !strcmp(out.format, "image_folder"), "format");
        FUZZ_CHECK(out.bytes >= 0 && out.bytes <= limits.max_bytes, "bytes %lld", (long long)out.bytes);
        fuzz_ingest_walk(dest, 0);
        ingest_dataset_clear(&out);
    } else {
        FUZZ_CHECK(rc == DT_INGEST_INVALID || rc == DT_INGEST_TOO_LARGE, "code %d: %s", rc, err);
        FUZZ_CHECK(err[0], "refusal without a message");
        FUZZ_CHECK(lstat(dest, &sb) != 0, "a refused upload left %s behind", dest);
        /* (Unless the archive itself spells the path: the fuzzer learns it from comparisons.) */
        FUZZ_CHECK(!strstr(err, root) || memmem(data, size, root, strlen(root)),
                   "the message names a server path: %s", err);
    }
    fuzz_remove_tree(run);
    return 0;
}
