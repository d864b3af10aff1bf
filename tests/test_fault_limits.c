/* test_fault_limits.c — the disk-full path of the writers and the size arithmetic behind "oom"
 * (README: Faults).
 *
 * ENOSPC is real here: /dev/full fails every write with it. A writer's temporary file is made a
 * link to /dev/full before the write (its name is known: the destination plus ".tmp.<pid>"), so
 * the write goes through the kernel exactly as on a full disk. Checked: the error is FS_NO_SPACE
 * (the "disk_full" of jobs and uploads), nothing of the failed file is left, and the checkpoint
 * written before it is byte for byte as it was and still the newest complete one.
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "dit.h"
#include "fsutil.h"
#include "safetensors.h"

static const char *tmp;

/* Entries of dir whose name contains part. */
static int count_containing(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, part)) n++;
    if (d) closedir(d);
    return n;
}

/* Makes path's temporary file (as safetensors_write names it) a link to /dev/full. */
static void make_tmp_full(const char *path) {
    char t[1400];
    snprintf(t, sizeof t, "%s.tmp.%ld", path, (long)getpid());
    unlink(t);
    if (symlink("/dev/full", t) != 0) {
        perror(t);
        exit(2);
    }
}

static int same_file(const char *path, const uint8_t *want, size_t want_len) {
    size_t len = 0;
    uint8_t *got = check_read_file(path, &len);
    int same = got && len == want_len && memcmp(got, want, len) == 0;
    free(got);
    return same;
}

static void test_write_all(void) {
    CHECK(fs_errno_no_space(ENOSPC) && fs_errno_no_space(EDQUOT), "ENOSPC and EDQUOT are disk full");
    CHECK(!fs_errno_no_space(EIO) && !fs_errno_no_space(EFBIG) && !fs_errno_no_space(0),
          "other errors are not");
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open /dev/full: %s", strerror(errno));
    if (fd < 0) return;
    char buf[4096] = {0};
    errno = 0;
    int rc = fs_write_all(fd, buf, sizeof buf);
    CHECK(rc == FS_NO_SPACE && errno == ENOSPC, "a write to /dev/full: rc %d, errno %d", rc, errno);
    close(fd);
    fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(fs_write_all(fd, buf, sizeof buf) == 0, "a write that fits");
    close(fd);
}

static void test_check_free(void) {
    char err[512] = "";
    int64_t free_bytes = fs_free_bytes(tmp);
    CHECK(free_bytes > 0, "free bytes of %s: %lld", tmp, (long long)free_bytes);
    CHECK(fs_check_free(tmp, "a checkpoint", 1, 0, "--min-free-mb", err, sizeof err) == 0,
          "one byte fits: %s", err);
    /* a reserve past the free space refuses even an empty write */
    uint64_t reserve = (uint64_t)free_bytes + ((uint64_t)1 << 30);
    int rc = fs_check_free(tmp, "a checkpoint", 0, reserve, "--min-free-mb", err, sizeof err);
    CHECK(rc == FS_NO_SPACE && strstr(err, "disk full") && strstr(err, "a checkpoint") &&
          strstr(err, "--min-free-mb"), "reserve past the free space: rc %d '%s'", rc, err);
    CHECK(!strstr(err, tmp), "the message leaves out the server's path: '%s'", err);
    rc = fs_check_free(tmp, "the upload", (uint64_t)free_bytes + 1, 0, "--min-free-mb", err, sizeof err);
    CHECK(rc == FS_NO_SPACE, "need past the free space: rc %d", rc);
    /* need + reserve past 2^64 must not wrap around into "fits" */
    rc = fs_check_free(tmp, "the upload", UINT64_MAX, UINT64_MAX, "--min-free-mb", err, sizeof err);
    CHECK(rc == FS_NO_SPACE, "huge need and reserve: rc %d", rc);
    rc = fs_check_free(check_path(tmp, "no-such-dir"), "x", 0, 0, "--min-free-mb", err, sizeof err);
    CHECK(rc == -1 && strstr(err, "no-such-dir"), "a missing directory: rc %d '%s'", rc, err);
}

static void test_safetensors_full(void) {
    char err[512] = "";
    float a[4] = {1, 2, 3, 4}, b[1024];
    for (int i = 0; i < 1024; i++) b[i] = (float)i;
    st_write_tensor ta = {"w", ST_F32, 1, {4}, a}, tb = {"w", ST_F32, 1, {1024}, b};
    const char *p = check_path(tmp, "full.safetensors");
    CHECK(safetensors_write(p, &ta, 1, NULL, err, sizeof err) == 0, "%s", err);
    size_t len0 = 0;
    uint8_t *orig = check_read_file(p, &len0);
    make_tmp_full(p);
    int rc = safetensors_write(p, &tb, 1, NULL, err, sizeof err);
    CHECK(rc == FS_NO_SPACE, "rc %d: '%s'", rc, err);
    CHECK(strstr(err, "No space left") != NULL, "the message says why: '%s'", err);
    CHECK(count_containing(tmp, "full.safetensors.tmp") == 0, "the temporary file is gone");
    CHECK(orig && same_file(p, orig, len0), "the previous file is unchanged");
    free(orig);
}

/* A checkpoint of step 2, then step 4 failing for a full disk on its state file and then on
 * its model file: step 2 stays the newest complete checkpoint, unchanged, and loads. */
static void test_checkpoint_full(void) {
    char err[512] = "";
    dt_backend *be = dt_backend_create("cpu", err, sizeof err);
    CHECK(be != NULL, "cpu backend: %s", err);
    if (!be) return;
    dit_config cfg;
    dit_model m;
    CHECK(dit_config_init(&cfg, 1, 16, 2, 2, 8, 3, 3, 1, err, sizeof err) == 0, "%s", err);
    CHECK(dit_model_init(&m, &cfg, be, err, sizeof err) == 0, "%s", err);
    const size_t P = m.num_floats;
    float *w = malloc(4 * P * sizeof(float)), *back = malloc(2 * P * sizeof(float));
    for (size_t i = 0; i < 4 * P; i++) w[i] = (float)(i % 97) * 0.01f;
    const char *dir = check_path(tmp, "ckpt");
    CHECK(checkpoint_save_state(dir, 2, &m, w, w + P, "{}", err, sizeof err) == 0, "%s", err);
    CHECK(checkpoint_save_model(dir, 2, &m, w + 2 * P, w + 3 * P, "{}", err, sizeof err) == 0, "%s", err);
    char model2[1400], state2[1400], model4[1400], state4[1400];
    checkpoint_path(model2, sizeof model2, dir, 2, "");
    checkpoint_path(state2, sizeof state2, dir, 2, "state");
    checkpoint_path(model4, sizeof model4, dir, 4, "");
    checkpoint_path(state4, sizeof state4, dir, 4, "state");
    size_t lm = 0, ls = 0;
    uint8_t *m2 = check_read_file(model2, &lm), *s2 = check_read_file(state2, &ls);

    make_tmp_full(state4);
    int rc = checkpoint_save_state(dir, 4, &m, w, w + P, "{}", err, sizeof err);
    CHECK(rc == FS_NO_SPACE, "state file on a full disk: rc %d '%s'", rc, err);
    CHECK(access(state4, F_OK) != 0, "no state file of step 4");

    CHECK(checkpoint_save_state(dir, 4, &m, w, w + P, "{}", err, sizeof err) == 0, "%s", err);
    make_tmp_full(model4);
    rc = checkpoint_save_model(dir, 4, &m, w + 2 * P, w + 3 * P, "{}", err, sizeof err);
    CHECK(rc == FS_NO_SPACE, "model file on a full disk: rc %d '%s'", rc, err);
    CHECK(access(model4, F_OK) != 0, "no model file of step 4");
    CHECK(count_containing(dir, ".tmp.") == 0, "no temporary file left");
    CHECK(checkpoint_latest(dir) == 2, "step 2 is still the newest complete checkpoint (got %d)",
          checkpoint_latest(dir));
    CHECK(m2 && s2 && same_file(model2, m2, lm) && same_file(state2, s2, ls),
          "step 2's files are byte for byte unchanged");
    dt_train_state st = {.weights = back, .ema = back + P};
    CHECK(checkpoint_load(dir, 2, &m, &st, err, sizeof err) == 0 &&
          memcmp(back + P, w + 2 * P, P * sizeof(float)) == 0, "step 2 loads: %s", err);
    uint64_t bound = checkpoint_bytes_bound(&m, 2);
    CHECK(bound >= (uint64_t)lm + ls, "the size bound %llu covers a checkpoint (%zu bytes)",
          (unsigned long long)bound, lm + ls);
    CHECK(bound < 2 * ((uint64_t)lm + ls) + 65536, "and is not absurdly loose (%llu for %zu)",
          (unsigned long long)bound, lm + ls);
    free(m2);
    free(s2);
    free(w);
    free(back);
    dit_model_free(&m);
    be->destroy(be);
}

/* The activation size of the largest plan a spec allows (batch 4096 at 1024x1024, patch 1,
 * 64 heads, depth 64) passes 2^64 bytes: it must read "does not fit", never wrap around into a
 * small allocation. Measured only: nothing is allocated. */
static void test_acts_overflow(void) {
    char err[512] = "";
    dt_backend *be = dt_backend_create("cpu", err, sizeof err);
    if (!be) return;
    dit_model m;
    memset(&m, 0, sizeof m);
    CHECK(dit_config_init(&m.cfg, 64, 4096, 64, 1, 1024, 3, 10, 1, err, sizeof err) == 0, "%s", err);
    m.be = be;
    CHECK(dit_acts_bytes(&m, 4096, 1) == SIZE_MAX, "past size_t: %zu", dit_acts_bytes(&m, 4096, 1));
    dit_acts a;
    CHECK(dit_acts_alloc(&a, &m, 4096, 1, err, sizeof err) == -1 && a.block == NULL &&
          strstr(err, "out of memory"), "allocation refused: '%s'", err);
    /* a small plan still measures as before: more than its largest buffer, far from SIZE_MAX */
    CHECK(dit_config_init(&m.cfg, 1, 16, 2, 2, 8, 3, 3, 1, err, sizeof err) == 0, "%s", err);
    size_t small = dit_acts_bytes(&m, 4, 1);
    CHECK(small > 4 * 16 * 16 * sizeof(float) && small < ((size_t)1 << 30), "small plan: %zu", small);
    be->destroy(be);
}

int main(void) {
    tmp = check_tmpdir("fault_limits");
    test_write_all();
    test_check_free();
    test_safetensors_full();
    test_checkpoint_full();
    test_acts_overflow();
    return check_done("test_fault_limits");
}
