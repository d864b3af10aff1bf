/* test_safetensors.c — safetensors round trip, a file from an independent writer, rejection of
 * corrupt files, and crash-safe writes that never damage the previous file. */
#include "check.h"
#include "safetensors.h"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) { perror(path); exit(2); }
    fwrite(b, 1, n, fp);
    fclose(fp);
}

/* Writes a raw safetensors file: header text as given (no validation) and `data_len` bytes. */
static void write_raw(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    uint8_t *b = calloc(8 + hl + data_len + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    write_bytes(path, b, 8 + hl + data_len);
    free(b);
}

/* Count of directory entries whose name starts with prefix (temp-file leak check). */
static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    if (d) closedir(d);
    return n;
}

static void test_round_trip(void) {
    float w4[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++) w4[i] = 0.01f * (float)i - 0.3f;
    double scalar = -3.25;
    uint16_t h[4] = {0x3c00, 0xc000, 0x7bff, 0x0001}; /* 1, -2, 65504, 2^-24 */
    uint16_t bf[3] = {0x3f80, 0xc020, 0x4049};        /* 1, -2.5, 3.140625 */
    int64_t i64[2] = {-5, (int64_t)1 << 50};
    int32_t i32[3] = {1, -2, 2147483647};
    int16_t i16[2] = {-32768, 12};
    int8_t i8[2] = {-128, 127};
    uint8_t u8[3] = {0, 200, 255}, bools[2] = {1, 0};
    st_write_tensor ts[] = {
        {"blocks.0.weight", ST_F32, 4, {2, 3, 4, 5}, w4},
        {"scalar", ST_F64, 0, {0}, &scalar},
        {"half", ST_F16, 2, {2, 2}, h},
        {"bf", ST_BF16, 1, {3}, bf},
        {"i64", ST_I64, 1, {2}, i64},
        {"i32", ST_I32, 1, {3}, i32},
        {"i16", ST_I16, 1, {2}, i16},
        {"i8", ST_I8, 1, {2}, i8},
        {"u8", ST_U8, 1, {3}, u8},
        {"bools", ST_BOOL, 1, {2}, bools},
        {"empty", ST_F32, 2, {0, 7}, NULL},
    };
    int nt = (int)(sizeof ts / sizeof ts[0]);
    const char *meta[] = {"step", "1200", "spec", "{\"method\":\"diff_tuning\"}", NULL};
    char err[512] = "";
    const char *p = check_path(tmp, "rt.safetensors");
    int rc = safetensors_write(p, ts, nt, meta, err, sizeof err);
    CHECK(rc == 0, "write failed: %s", err);
    CHECK(count_prefix(tmp, "rt.safetensors.tmp") == 0, "temporary file left behind");

    /* The layout on disk: header length a multiple of 8, padded with spaces, then data. */
    size_t len;
    uint8_t *raw = check_read_file(p, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    CHECK(hl % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)hl);
    CHECK(raw[8] == '{', "header does not start with '{'");
    size_t last = 8 + hl - 1;
    while (last > 8 && raw[last] == ' ') last--;
    CHECK(raw[last] == '}', "header padding is not spaces");
    size_t total = 0;
    for (int i = 0; i < nt; i++) {
        size_t b = safetensors_dtype_size(ts[i].dtype);
        for (int d = 0; d < ts[i].ndim; d++) b *= (size_t)ts[i].shape[d];
        total += b;
    }
    CHECK(len == 8 + hl + total, "file is %zu bytes, expected %zu", len, (size_t)(8 + hl + total));
    /* metadata first, then tensors in the order given */
    const char *hdr = (const char *)raw + 8;
    const char *pm = strstr(hdr, "\"__metadata__\""), *p0 = strstr(hdr, "\"blocks.0.weight\""),
               *p1 = strstr(hdr, "\"bools\"");
    CHECK(pm && p0 && p1 && pm < p0 && p0 < p1, "header key order not preserved");
    free(raw);

    st_file f;
    rc = safetensors_open(&f, p, err, sizeof err);
    CHECK(rc == 0, "open failed: %s", err);
    if (rc != 0) return;
    CHECK(f.n == nt, "%d tensors, expected %d", f.n, nt);
    size_t expect_off = 0;
    for (int i = 0; i < nt && i < f.n; i++) {
        const st_tensor *t = &f.tensors[i];
        CHECK(strcmp(t->name, ts[i].name) == 0, "tensor %d is '%s', expected '%s'", i, t->name,
              ts[i].name);
        CHECK(t->dtype == ts[i].dtype, "%s: dtype", ts[i].name);
        CHECK(t->ndim == ts[i].ndim, "%s: ndim %d", ts[i].name, t->ndim);
        for (int d = 0; d < ts[i].ndim; d++)
            CHECK(t->shape[d] == ts[i].shape[d], "%s: shape[%d]", ts[i].name, d);
        CHECK(t->offset == expect_off, "%s: offset %zu, expected %zu (contiguous)", ts[i].name,
              t->offset, expect_off);
        CHECK(t->nbytes == safetensors_numel(t) * safetensors_dtype_size(t->dtype), "%s: nbytes",
              ts[i].name);
        if (t->nbytes)
            CHECK(memcmp(f.data + t->offset, ts[i].data, t->nbytes) == 0, "%s: bytes differ",
                  ts[i].name);
        expect_off += t->nbytes;
    }
    CHECK(f.n_meta == 2, "%d metadata entries", f.n_meta);
    const char *step = safetensors_meta(&f, "step"), *spec = safetensors_meta(&f, "spec");
    CHECK(step && strcmp(step, "1200") == 0, "metadata step");
    CHECK(spec && strcmp(spec, "{\"method\":\"diff_tuning\"}") == 0, "metadata spec");
    CHECK(safetensors_meta(&f, "nope") == NULL, "missing metadata key found");
    CHECK(safetensors_find(&f, "nope") == NULL, "missing tensor found");
    const st_tensor *sc = safetensors_find(&f, "scalar");
    CHECK(sc && sc->ndim == 0 && safetensors_numel(sc) == 1, "0-d tensor has one element");
    const st_tensor *em = safetensors_find(&f, "empty");
    CHECK(em && safetensors_numel(em) == 0 && em->nbytes == 0, "empty tensor");

    float got[120];
    CHECK(safetensors_read_f32(&f, "blocks.0.weight", got, 120, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(got, w4, sizeof w4) == 0, "f32 values differ");
    CHECK(safetensors_read_f32(&f, "scalar", got, 1, err, sizeof err) == 0, "%s", err);
    CHECK(got[0] == -3.25f, "f64 scalar read as %g", got[0]);
    CHECK(safetensors_read_f32(&f, "half", got, 4, err, sizeof err) == 0, "%s", err);
    CHECK(got[0] == 1.0f && got[1] == -2.0f && got[2] == 65504.0f && got[3] == ldexpf(1, -24),
          "f16 read as %g %g %g %g", got[0], got[1], got[2], got[3]);
    CHECK(safetensors_read_f32(&f, "bf", got, 3, err, sizeof err) == 0, "%s", err);
    CHECK(got[0] == 1.0f && got[1] == -2.5f && got[2] == 3.140625f, "bf16 read as %g %g %g",
          got[0], got[1], got[2]);
    CHECK(safetensors_read_f32(&f, "empty", got, 0, err, sizeof err) == 0, "%s", err);

    err[0] = '\0';
    CHECK(safetensors_read_f32(&f, "i64", got, 2, err, sizeof err) != 0 && strstr(err, "i64"),
          "integer tensor read as float: '%s'", err);
    err[0] = '\0';
    CHECK(safetensors_read_f32(&f, "half", got, 3, err, sizeof err) != 0 && err[0],
          "element count mismatch accepted");
    err[0] = '\0';
    CHECK(safetensors_read_f32(&f, "missing", got, 1, err, sizeof err) != 0 &&
          strstr(err, "missing"), "missing tensor read: '%s'", err);
    safetensors_close(&f);
    safetensors_close(&f); /* idempotent */
    CHECK(f.map == NULL && f.tensors == NULL, "close did not reset");

    /* A file with no tensors and no metadata is valid. */
    const char *none = check_path(tmp, "none.safetensors");
    CHECK(safetensors_write(none, NULL, 0, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(safetensors_open(&f, none, err, sizeof err) == 0, "%s", err);
    CHECK(f.n == 0 && f.n_meta == 0, "empty file has %d tensors", f.n);
    safetensors_close(&f);
}

/* Reads the file written by tests/make_safetensors.py (an independent writer). */
static void test_python_file(void) {
    const char *src = getenv("DIFFTUNE_SOURCE");
    if (!src) src = ".";
    const char *out = check_path(tmp, "python.safetensors");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "python3 '%s/tests/make_safetensors.py' '%s'", src, out);
    int rc = system(cmd);
    CHECK(rc == 0, "'%s' failed (%d); is python3 installed and DIFFTUNE_SOURCE set?", cmd, rc);
    if (rc != 0) return;

    st_file f;
    char err[512];
    rc = safetensors_open(&f, out, err, sizeof err);
    CHECK(rc == 0, "open of python file failed: %s", err);
    if (rc != 0) return;
    static const char *const order[] = {"scalar", "layer.weight", "bytes", "half", "empty",
                                        "counts", "brain", "double"};
    CHECK(f.n == 8, "%d tensors, expected 8", f.n);
    for (int i = 0; i < 8 && i < f.n; i++)
        CHECK(strcmp(f.tensors[i].name, order[i]) == 0, "tensor %d is '%s', expected '%s' "
              "(header order)", i, f.tensors[i].name, order[i]);
    CHECK(((uintptr_t)f.data & 7) != 0, "test file should have an unaligned data section");
    const char *fmt = safetensors_meta(&f, "format"), *note = safetensors_meta(&f, "note");
    CHECK(fmt && strcmp(fmt, "pt") == 0, "metadata format");
    CHECK(note && strcmp(note, "written by make_safetensors.py") == 0, "metadata note");

    const st_tensor *t = safetensors_find(&f, "layer.weight");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3,
          "layer.weight shape");
    float v[6];
    CHECK(safetensors_read_f32(&f, "layer.weight", v, 6, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 6; i++) CHECK(v[i] == 0.5f * (float)i - 1.0f, "layer.weight[%d] = %g", i, v[i]);

    t = safetensors_find(&f, "half");
    CHECK(t && t->dtype == ST_F16 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 2,
          "half shape");
    CHECK(safetensors_read_f32(&f, "half", v, 4, err, sizeof err) == 0, "%s", err);
    CHECK(v[0] == 0.5f && v[1] == -1.25f && v[2] == 65504.0f && v[3] == ldexpf(1.0f, -24),
          "half = %g %g %g %g", v[0], v[1], v[2], v[3]);

    t = safetensors_find(&f, "brain");
    CHECK(t && t->dtype == ST_BF16 && t->ndim == 1 && t->shape[0] == 3, "brain shape");
    CHECK(safetensors_read_f32(&f, "brain", v, 3, err, sizeof err) == 0, "%s", err);
    CHECK(v[0] == 1.0f && v[1] == -2.5f && v[2] == 3.140625f, "brain = %g %g %g", v[0], v[1], v[2]);

    CHECK(safetensors_read_f32(&f, "double", v, 2, err, sizeof err) == 0, "%s", err);
    CHECK(v[0] == (float)1e-3 && v[1] == -7.25f, "double = %g %g", v[0], v[1]);

    t = safetensors_find(&f, "scalar");
    CHECK(t && t->ndim == 0, "scalar is 0-d");
    CHECK(safetensors_read_f32(&f, "scalar", v, 1, err, sizeof err) == 0 && v[0] == 42.5f,
          "scalar = %g", v[0]);

    t = safetensors_find(&f, "counts");
    CHECK(t && t->dtype == ST_I64 && t->shape[0] == 3, "counts shape");
    if (t) {
        int64_t c[3];
        memcpy(c, f.data + t->offset, sizeof c);
        CHECK(c[0] == -1 && c[1] == ((int64_t)1 << 40) && c[2] == 7, "counts values");
    }
    t = safetensors_find(&f, "bytes");
    CHECK(t && t->dtype == ST_U8 && t->ndim == 2 && t->shape[1] == 5, "bytes shape");
    if (t) {
        static const uint8_t want[5] = {0, 1, 127, 128, 255};
        CHECK(memcmp(f.data + t->offset, want, 5) == 0, "bytes values");
    }
    t = safetensors_find(&f, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 4 && t->nbytes == 0, "empty");
    safetensors_close(&f);
}

static void expect_reject(const char *name, const char *what, const char *needle) {
    st_file f;
    char err[512] = "";
    const char *p = check_path(tmp, name);
    int rc = safetensors_open(&f, p, err, sizeof err);
    CHECK(rc != 0, "%s: corrupt file accepted", what);
    CHECK(strstr(err, p) != NULL, "%s: message does not name the file: '%s'", what, err);
    CHECK(!needle || strstr(err, needle), "%s: message '%s' lacks '%s'", what, err, needle);
    CHECK(f.map == NULL && f.tensors == NULL && f.n == 0, "%s: st_file not reset", what);
    safetensors_close(&f);
    if (rc == 0) safetensors_close(&f);
}

static void test_corrupt(void) {
    write_bytes(check_path(tmp, "short.st"), "\x10\x00\x00", 3);
    expect_reject("short.st", "3-byte file", "too short");

    uint8_t big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(check_path(tmp, "hlen.st"), big, 16);
    expect_reject("hlen.st", "header length beyond file", "past the end");

    uint8_t huge[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
    write_bytes(check_path(tmp, "huge.st"), huge, 16);
    expect_reject("huge.st", "header length 2^40", "implausible");

    write_raw(check_path(tmp, "json.st"), "{\"a\": {\"dtype\": \"F32\",", 0);
    expect_reject("json.st", "bad JSON", "JSON");
    write_raw(check_path(tmp, "array.st"), "[1, 2]", 0);
    expect_reject("array.st", "header is an array", "object");

    write_raw(check_path(tmp, "range.st"),
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12);
    expect_reject("range.st", "offsets out of range", "past the end");

    write_raw(check_path(tmp, "overlap.st"),
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
    expect_reject("overlap.st", "overlapping offsets", "overlap");
    /* the overlap is found whatever the header order */
    write_raw(check_path(tmp, "overlap2.st"),
              "{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]},"
              "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[1,17]}}", 17);
    expect_reject("overlap2.st", "overlapping offsets, shuffled", "overlap");

    write_raw(check_path(tmp, "count.st"),
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20);
    expect_reject("count.st", "wrong byte count for shape", "needs 24");

    write_raw(check_path(tmp, "dtype.st"),
              "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    expect_reject("dtype.st", "unknown dtype", "Q4_K");

    write_raw(check_path(tmp, "meta.st"), "{\"__metadata__\":{\"step\":12}}", 0);
    expect_reject("meta.st", "non-string metadata", "step");
    write_raw(check_path(tmp, "meta2.st"), "{\"__metadata__\":[\"x\"]}", 0);
    expect_reject("meta2.st", "metadata not an object", "__metadata__");

    write_raw(check_path(tmp, "neg.st"),
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_reject("neg.st", "negative dimension", "shape");
    write_raw(check_path(tmp, "dims.st"),
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    expect_reject("dims.st", "9 dimensions", "dimensions");
    write_raw(check_path(tmp, "offs.st"),
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1);
    expect_reject("offs.st", "one data offset", "data_offsets");
    write_raw(check_path(tmp, "rev.st"),
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,1]}}", 4);
    expect_reject("rev.st", "begin > end", "data_offsets");
    write_raw(check_path(tmp, "nodtype.st"), "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    expect_reject("nodtype.st", "missing dtype", "dtype");
    write_raw(check_path(tmp, "dup.st"),
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    expect_reject("dup.st", "duplicate tensor name", NULL);
    write_raw(check_path(tmp, "bigshape.st"),
              "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],"
              "\"data_offsets\":[0,8]}}", 8);
    expect_reject("bigshape.st", "shape overflowing size_t", "too large");

    /* A valid file cut short by one byte. */
    float x[4] = {1, 2, 3, 4};
    st_write_tensor t = {"x", ST_F32, 1, {4}, x};
    char err[512];
    const char *p = check_path(tmp, "trunc.st");
    CHECK(safetensors_write(p, &t, 1, NULL, err, sizeof err) == 0, "%s", err);
    size_t len;
    uint8_t *raw = check_read_file(p, &len);
    CHECK(truncate(p, (off_t)len - 1) == 0, "truncate failed");
    free(raw);
    expect_reject("trunc.st", "truncated file", "past the end");

    st_file f;
    CHECK(safetensors_open(&f, check_path(tmp, "does-not-exist.st"), err, sizeof err) != 0 &&
          strstr(err, "does-not-exist.st"), "missing file: '%s'", err);
}

static void test_failed_write(void) {
    char err[512];
    float a[4] = {1, 2, 3, 4}, b[256 * 1024];
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) b[i] = (float)i;
    st_write_tensor ta = {"w", ST_F32, 1, {4}, a};
    st_write_tensor tb = {"w", ST_F32, 1, {256 * 1024}, b};
    const char *p = check_path(tmp, "keep.safetensors");
    CHECK(safetensors_write(p, &ta, 1, NULL, err, sizeof err) == 0, "%s", err);
    size_t len0;
    uint8_t *orig = check_read_file(p, &len0);

    /* 1. The temporary file cannot be created (a directory is in its way). */
    char tmpname[1300];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", p, (long)getpid());
    CHECK(mkdir(tmpname, 0755) == 0, "mkdir %s", tmpname);
    err[0] = '\0';
    CHECK(safetensors_write(p, &tb, 1, NULL, err, sizeof err) != 0, "write over blocked temp ok");
    CHECK(strstr(err, "keep.safetensors") != NULL, "message does not name the file: '%s'", err);
    rmdir(tmpname);

    /* 2. The disk "fills up" halfway through the data (file size limit). */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    int rc = safetensors_write(p, &tb, 1, NULL, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(rc != 0, "write past the file size limit reported success");
    CHECK(count_prefix(tmp, "keep.safetensors.tmp") == 0, "temporary file left after failure");

    /* 3. Invalid input is rejected before anything is written. */
    st_write_tensor dup[2] = {ta, ta};
    CHECK(safetensors_write(p, dup, 2, NULL, err, sizeof err) != 0, "duplicate names accepted");
    st_write_tensor neg = {"n", ST_F32, 1, {-2}, a};
    CHECK(safetensors_write(p, &neg, 1, NULL, err, sizeof err) != 0, "negative shape accepted");
    const char *badmeta[] = {"k", NULL};
    CHECK(safetensors_write(p, &ta, 1, badmeta, err, sizeof err) != 0, "key without value accepted");

    size_t len1;
    uint8_t *now = check_read_file(p, &len1);
    CHECK(now && len1 == len0 && memcmp(orig, now, len0) == 0, "existing file was modified");
    free(now);
    free(orig);
    st_file f;
    CHECK(safetensors_open(&f, p, err, sizeof err) == 0 && f.n == 1 && f.tensors[0].shape[0] == 4,
          "old file no longer opens: %s", err);
    safetensors_close(&f);

    /* 4. A path in a missing folder fails cleanly and creates nothing. */
    char missing[1300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", tmp);
    err[0] = '\0';
    CHECK(safetensors_write(missing, &ta, 1, NULL, err, sizeof err) != 0 && err[0],
          "write into a missing folder succeeded");
    CHECK(access(missing, F_OK) != 0, "file appeared in a missing folder");

    /* 5. A successful overwrite replaces the content. */
    CHECK(safetensors_write(p, &tb, 1, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(safetensors_open(&f, p, err, sizeof err) == 0 && f.n == 1 &&
          f.tensors[0].shape[0] == 256 * 1024, "overwrite not visible: %s", err);
    safetensors_close(&f);
}

int main(void) {
    tmp = check_tmpdir("safetensors");
    test_round_trip();
    test_python_file();
    test_corrupt();
    test_failed_write();
    return check_done("test_safetensors");
}
