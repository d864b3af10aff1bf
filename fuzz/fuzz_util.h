/* fuzz_util.h — what the fuzz targets share: a private scratch folder, files made from the
 * input bytes, and a check that reports a broken property as a crash libFuzzer keeps.
 *
 * Header-only (each target is one translation unit). Nothing here is used by the library.
 */
#ifndef DT_FUZZ_UTIL_H
#define DT_FUZZ_UTIL_H

#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A broken property of the code under test: print it and abort, which libFuzzer records as a
 * crash with the input that caused it. */
#define FUZZ_CHECK(cond, ...)                                                          \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: property violated: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static int fuzz_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(path);
}

/* Removes path and everything under it (links are not followed). */
static inline void fuzz_remove_tree(const char *path) {
    nftw(path, fuzz_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char fuzz_scratch_path[512];

static void fuzz_scratch_cleanup(void) {
    if (fuzz_scratch_path[0]) fuzz_remove_tree(fuzz_scratch_path);
}

/* The process's own empty folder under $TMPDIR (else /tmp), created on first use and removed
 * at exit. Aborts when it cannot be made: no target can run without it. */
static inline const char *fuzz_scratch(void) {
    if (fuzz_scratch_path[0]) return fuzz_scratch_path;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_scratch_path, sizeof fuzz_scratch_path, "%s/difftune-fuzz-XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(fuzz_scratch_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_scratch_cleanup);
    return fuzz_scratch_path;
}

/* Writes n bytes to path (created or truncated). Aborts on failure: that is the harness's
 * trouble, not a finding. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n) || fclose(fp) != 0) {
        perror(path);
        abort();
    }
}

/* The input as an anonymous in-memory file: returns its descriptor and puts a path that opens
 * it ("/proc/self/fd/N") in path. Close the descriptor when done. */
static inline int fuzz_memfd(const uint8_t *data, size_t n, char *path, size_t pathlen) {
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0) {
        perror("fuzz: memfd_create");
        abort();
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) {
            perror("fuzz: write");
            abort();
        }
        off += (size_t)w;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

/* Splits the input at the first byte sep: *head is what comes before (not NUL-terminated,
 * *head_len bytes), the rest follows the separator. Returns 0 when sep does not occur (then
 * the whole input is the rest and the head is empty). */
static inline int fuzz_split(const uint8_t **data, size_t *size, uint8_t sep, const uint8_t **head,
                             size_t *head_len) {
    const uint8_t *p = memchr(*data, sep, *size);
    *head = *data;
    if (!p) {
        *head_len = 0;
        return 0;
    }
    *head_len = (size_t)(p - *data);
    *size -= *head_len + 1;
    *data = p + 1;
    return 1;
}

/* A NUL-terminated malloc'd copy of n bytes (the caller frees it). */
static inline char *fuzz_strndup(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

#endif
