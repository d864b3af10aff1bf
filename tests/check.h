/* check.h — the minimal assertion kit used by the C tests.
 *
 * CHECK records a failure with file and line and carries on, so one run reports every broken
 * expectation; check_done() prints "N passed, M failed" and returns the process exit code.
 */
#ifndef DT_CHECK_H
#define DT_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed_, check_failed_;

#define CHECK(cond, ...) do { \
    if (cond) { check_passed_++; } else { \
        check_failed_++; \
        fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

/* Relative-or-absolute closeness: |a-b| <= tol * max(1, |a|, |b|). */
#define CHECK_CLOSE(a, b, tol, what) do { double a_ = (a), b_ = (b); \
    double s_ = fmax(1.0, fmax(fabs(a_), fabs(b_))); \
    CHECK(fabs(a_ - b_) <= (tol) * s_, "%s: %.9g vs %.9g (tol %g)", (what), a_, b_, (double)(tol)); \
} while (0)

/* Prints the tally; returns the exit status for main. */
static inline int check_done(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, check_passed_, check_failed_);
    return check_failed_ ? 1 : 0;
}

/* A scratch directory for this test under DIFFTUNE_TEST_TMP (or /tmp), created empty. */
static inline const char *check_tmpdir(const char *name) {
    static char buf[1024];
    const char *base = getenv("DIFFTUNE_TEST_TMP");
    if (!base) base = "/tmp/difftune-test";
    snprintf(buf, sizeof buf, "%s/%s", base, name);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    if (system(cmd) != 0) { fprintf(stderr, "cannot create %s\n", buf); exit(2); }
    return buf;
}

/* "dir/name" (dir usually the test's check_tmpdir) in one of 8 rotating static buffers: the
 * result stays valid until the 8th call after it, so a few paths can be live at once. */
static inline char *check_path(const char *dir, const char *name) {
    static char buf[8][1200];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* The whole file at path, its size in *len: a malloc'd buffer the caller frees (at least one
 * byte, so an empty file is not NULL). NULL when it cannot be opened or memory runs out. */
static inline uint8_t *check_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    uint8_t *b = n >= 0 && fseek(fp, 0, SEEK_SET) == 0 ? malloc(n > 0 ? (size_t)n : 1) : NULL;
    if (b) *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

/* The normalised error max |ours - ref| / max |ref| over n values (ref's scale, so one bound fits
 * tensors of any magnitude), the index of the largest difference in *worst. */
static inline double check_norm_err(const float *ours, const float *ref, size_t n, size_t *worst) {
    double max_err = 0, max_ref = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)ours[i] - ref[i]);
        if (e > max_err) { max_err = e; *worst = i; }
        max_ref = fmax(max_ref, fabs(ref[i]));
    }
    return max_err / fmax(max_ref, 1e-30);
}

#endif
