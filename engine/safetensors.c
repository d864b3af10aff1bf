/* safetensors.c — safetensors reader (mmap + validated header) and crash-safe writer.
 *
 * The reader trusts nothing in the file: the header length, every dtype, shape and offset pair is
 * checked before an st_file is handed out, so callers may index tensor data without bounds checks.
 * The writer never modifies the destination in place; it writes a temporary file beside it and
 * renames it over the destination only once the bytes are on disk.
 */
#include "errmsg.h"
#include "fsutil.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (tensor bytes are copied as they are)"
#endif

/* A header larger than this is certainly not a tensor index (the reference implementation uses
 * the same bound) and would only make us parse attacker-sized JSON. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

static const struct {
    const char *name;
    st_dtype dtype;
    size_t size;
} st_dtypes[] = {
    {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}, {"F64", ST_F64, 8},
    {"I64", ST_I64, 8}, {"I32", ST_I32, 4}, {"I16", ST_I16, 2}, {"I8", ST_I8, 1},
    {"U8", ST_U8, 1},   {"BOOL", ST_BOOL, 1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

size_t safetensors_dtype_size(st_dtype dt) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].dtype == dt) return st_dtypes[i].size;
    return 0;
}

static const char *st_dtype_name(st_dtype dt) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (st_dtypes[i].dtype == dt) return st_dtypes[i].name;
    return NULL;
}

static int st_dtype_parse(const char *s, st_dtype *dt) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) { *dt = st_dtypes[i].dtype; return 0; }
    return -1;
}

size_t safetensors_numel(const st_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* ---- reader ---------------------------------------------------------------------------------- */

void safetensors_close(st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        if (f->meta_keys) free(f->meta_keys[i]);
        if (f->meta_values) free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->map && f->map != MAP_FAILED) munmap(f->map, f->map_len);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int st_cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Fills t from one header entry; on error writes a message naming the tensor. */
static int st_parse_entry(const char *path, const char *name, json_t *v, size_t data_len,
                          st_tensor *t, char *err, size_t errlen) {
    if (!json_is_object(v)) {
        dt_errorf(err, errlen, "%s: tensor '%s': header entry is not an object", path, name);
        return -1;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo)) {
        dt_errorf(err, errlen, "%s: tensor '%s': needs string \"dtype\", array \"shape\" and array "
               "\"data_offsets\"", path, name);
        return -1;
    }
    if (st_dtype_parse(json_string_value(jd), &t->dtype) != 0) {
        dt_errorf(err, errlen, "%s: tensor '%s': unknown or unsupported dtype \"%s\" (supported: F32 "
               "F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)", path, name, json_string_value(jd));
        return -1;
    }
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS) {
        dt_errorf(err, errlen, "%s: tensor '%s': %zu dimensions, at most %d supported", path, name,
               nd, ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)nd;
    size_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            dt_errorf(err, errlen, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path,
                   name, i);
            return -1;
        }
        t->shape[i] = (int64_t)json_integer_value(d);
        if (__builtin_mul_overflow(numel, (size_t)t->shape[i], &numel)) {
            dt_errorf(err, errlen, "%s: tensor '%s': shape is too large", path, name);
            return -1;
        }
    }
    size_t expect;
    if (__builtin_mul_overflow(numel, safetensors_dtype_size(t->dtype), &expect)) {
        dt_errorf(err, errlen, "%s: tensor '%s': shape is too large", path, name);
        return -1;
    }
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (json_array_size(jo) != 2 || !json_is_integer(jb) || !json_is_integer(je) ||
        json_integer_value(jb) < 0 || json_integer_value(je) < json_integer_value(jb)) {
        dt_errorf(err, errlen, "%s: tensor '%s': data_offsets must be [begin, end] with "
               "0 <= begin <= end", path, name);
        return -1;
    }
    uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
    if (e > data_len) {
        dt_errorf(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
               "data section (%zu bytes); the file is truncated or corrupt", path, name,
               (unsigned long long)b, (unsigned long long)e, data_len);
        return -1;
    }
    if (e - b != expect) {
        dt_errorf(err, errlen, "%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs "
               "%zu", path, name, (unsigned long long)(e - b), json_string_value(jd), expect);
        return -1;
    }
    t->offset = (size_t)b;
    t->nbytes = (size_t)(e - b);
    return 0;
}

static int st_parse_metadata(st_file *f, json_t *meta, char *err, size_t errlen) {
    if (!json_is_object(meta)) {
        dt_errorf(err, errlen, "%s: __metadata__ is not an object", f->path);
        return -1;
    }
    size_t nm = json_object_size(meta);
    f->meta_keys = calloc(nm ? nm : 1, sizeof *f->meta_keys);
    f->meta_values = calloc(nm ? nm : 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) {
        dt_errorf(err, errlen, "%s: out of memory", f->path);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) {
            dt_errorf(err, errlen, "%s: __metadata__ value of '%s' is not a string", f->path, k);
            return -1;
        }
        f->meta_keys[f->n_meta] = strdup(k);
        f->meta_values[f->n_meta] = strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1]) {
            dt_errorf(err, errlen, "%s: out of memory", f->path);
            return -1;
        }
    }
    return 0;
}

int safetensors_open(st_file *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    json_t *root = NULL;
    st_tensor **sorted = NULL;
    f->path = strdup(path);
    if (!f->path) { dt_errorf(err, errlen, "%s: out of memory", path); goto fail; }

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dt_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        dt_errorf(err, errlen, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    if (sb.st_size < 8) {
        dt_errorf(err, errlen, "%s: file is %lld bytes, too short for a safetensors header", path,
               (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    f->map_len = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        dt_errorf(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    const uint8_t *bytes = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | bytes[i];
    if (hlen > ST_MAX_HEADER) {
        dt_errorf(err, errlen, "%s: header length %llu is implausible (limit %llu); not a "
               "safetensors file?", path, (unsigned long long)hlen,
               (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > f->map_len - 8) {
        dt_errorf(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes); "
               "the file is truncated or not safetensors", path, (unsigned long long)hlen,
               f->map_len);
        goto fail;
    }
    f->data = bytes + 8 + hlen;
    f->data_len = f->map_len - 8 - (size_t)hlen;

    json_error_t jerr;
    root = json_loadb((const char *)bytes + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        dt_errorf(err, errlen, "%s: header is not valid JSON (byte %d: %s)", path, jerr.position,
               jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        dt_errorf(err, errlen, "%s: header is not a JSON object", path);
        goto fail;
    }
    size_t nt = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) nt--;
    f->tensors = calloc(nt ? nt : 1, sizeof *f->tensors);
    if (!f->tensors) { dt_errorf(err, errlen, "%s: out of memory", path); goto fail; }
    if (meta && st_parse_metadata(f, meta, err, errlen) != 0) goto fail;

    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->n];
        t->name = strdup(key);
        if (!t->name) { dt_errorf(err, errlen, "%s: out of memory", path); goto fail; }
        f->n++;
        if (st_parse_entry(path, key, val, f->data_len, t, err, errlen) != 0) goto fail;
    }

    /* Overlap check on a copy sorted by begin offset; zero-byte tensors overlap nothing. */
    sorted = malloc((f->n ? f->n : 1) * sizeof *sorted);
    if (!sorted) { dt_errorf(err, errlen, "%s: out of memory", path); goto fail; }
    for (int i = 0; i < f->n; i++) sorted[i] = &f->tensors[i];
    qsort(sorted, (size_t)f->n, sizeof *sorted, st_cmp_offset);
    size_t end = 0;
    const char *end_name = NULL;
    for (int i = 0; i < f->n; i++) {
        if (sorted[i]->nbytes == 0) continue;
        if (end_name && sorted[i]->offset < end) {
            dt_errorf(err, errlen, "%s: tensors '%s' and '%s' have overlapping data_offsets", path,
                   end_name, sorted[i]->name);
            goto fail;
        }
        end = sorted[i]->offset + sorted[i]->nbytes;
        end_name = sorted[i]->name;
    }
    free(sorted);
    json_decref(root);
    return 0;

fail:
    free(sorted);
    json_decref(root);
    safetensors_close(f);
    return -1;
}

const st_tensor *safetensors_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *safetensors_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

static float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 is exact in float */
        f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

int safetensors_read_f32(const st_file *f, const char *name, float *dst, size_t n,
                         char *err, size_t errlen) {
    const st_tensor *t = safetensors_find(f, name);
    if (!t) {
        dt_errorf(err, errlen, "%s: no tensor named '%s'", f->path, name);
        return -1;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
        dt_errorf(err, errlen, "%s: tensor '%s' has dtype %s, expected a floating-point dtype",
               f->path, name, st_dtype_name(t->dtype));
        return -1;
    }
    size_t numel = safetensors_numel(t);
    if (numel != n) {
        dt_errorf(err, errlen, "%s: tensor '%s' has %zu elements, expected %zu", f->path, name, numel,
               n);
        return -1;
    }
    const uint8_t *src = f->data + t->offset; /* may be unaligned: copy through memcpy */
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, src, n * 4);
        break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = st_f16_to_f32(h);
        }
        break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* ---- writer ---------------------------------------------------------------------------------- */

/* fsync of the directory holding path, so the rename itself is durable. Filesystems that cannot
 * sync directories (EINVAL) are accepted. */
static int st_fsync_dir(const char *path) {
    char *dir = strdup(path);
    if (!dir) return -1;
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0 && saved != EINVAL) { errno = saved; return -1; }
    return 0;
}

/* Builds the header JSON (padded with spaces to a multiple of 8 bytes) for tensors laid out
 * contiguously in the given order. Returns a malloc'd string and its length, or NULL. */
static char *st_build_header(const st_write_tensor *tensors, int n, const char *const *meta_kv,
                             size_t *hlen, char *err, size_t errlen, const char *path) {
    json_t *root = json_object();
    if (!root) goto oom;
    if (meta_kv && meta_kv[0]) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta) != 0) goto oom;
        for (int i = 0; meta_kv[i]; i += 2) {
            if (!meta_kv[i + 1]) {
                dt_errorf(err, errlen, "%s: metadata key '%s' has no value", path, meta_kv[i]);
                json_decref(root);
                return NULL;
            }
            json_t *s = json_string(meta_kv[i + 1]);
            if (!s) {
                dt_errorf(err, errlen, "%s: metadata '%s' is not valid UTF-8", path, meta_kv[i]);
                json_decref(root);
                return NULL;
            }
            if (json_object_set_new(meta, meta_kv[i], s) != 0) {
                dt_errorf(err, errlen, "%s: metadata key '%s' is not valid UTF-8", path, meta_kv[i]);
                json_decref(root);
                return NULL;
            }
        }
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        if (!e || !shape || !offs) { json_decref(e); json_decref(shape); json_decref(offs); goto oom; }
        size_t nbytes = safetensors_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            json_array_append_new(shape, json_integer(t->shape[d]));
            nbytes *= (size_t)t->shape[d];
        }
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + nbytes)));
        off += nbytes;
        json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_set_new(root, t->name, e) != 0) {
            dt_errorf(err, errlen, "%s: tensor name '%s' is not valid UTF-8", path, t->name);
            json_decref(root);
            return NULL;
        }
    }
    char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!js) goto oom;
    size_t len = strlen(js), padded = (len + 7) / 8 * 8;
    char *out = malloc(padded + 1);
    if (!out) { free(js); goto oom; }
    memcpy(out, js, len);
    memset(out + len, ' ', padded - len);
    out[padded] = '\0';
    free(js);
    *hlen = padded;
    return out;
oom:
    json_decref(root);
    dt_errorf(err, errlen, "%s: out of memory building the header", path);
    return NULL;
}

int safetensors_write(const char *path, const st_write_tensor *tensors, int n,
                      const char *const *meta_kv, char *err, size_t errlen) {
    if (n < 0 || (n > 0 && !tensors)) {
        dt_errorf(err, errlen, "%s: bad tensor list", path);
        return -1;
    }
    /* Validate everything before touching the filesystem. */
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0) {
            dt_errorf(err, errlen, "%s: tensor %d has an empty or reserved name", path, i);
            return -1;
        }
        if (!st_dtype_name(t->dtype)) {
            dt_errorf(err, errlen, "%s: tensor '%s' has an unknown dtype", path, t->name);
            return -1;
        }
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            dt_errorf(err, errlen, "%s: tensor '%s' has %d dimensions (0..%d allowed)", path,
                   t->name, t->ndim, ST_MAX_DIMS);
            return -1;
        }
        size_t nbytes = safetensors_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 ||
                __builtin_mul_overflow(nbytes, (size_t)t->shape[d], &nbytes)) {
                dt_errorf(err, errlen, "%s: tensor '%s' has a bad shape", path, t->name);
                return -1;
            }
        }
        if (nbytes > 0 && !t->data) {
            dt_errorf(err, errlen, "%s: tensor '%s' has no data", path, t->name);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) {
                dt_errorf(err, errlen, "%s: tensor name '%s' appears twice", path, t->name);
                return -1;
            }
    }
    size_t hlen = 0;
    char *header = st_build_header(tensors, n, meta_kv, &hlen, err, errlen, path);
    if (!header) return -1;

    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(header);
        dt_errorf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        dt_errorf(err, errlen, "%s: cannot create temporary file %s: %s", path, tmp,
               strerror(e));
        free(header);
        free(tmp);
        return fs_errno_no_space(e) ? FS_NO_SPACE : -1;
    }
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    const char *stage = "write";
    int ok = fs_write_all(fd, lenbuf, 8) == 0 && fs_write_all(fd, header, hlen) == 0;
    for (int i = 0; ok && i < n; i++) {
        size_t nbytes = safetensors_dtype_size(tensors[i].dtype);
        for (int d = 0; d < tensors[i].ndim; d++) nbytes *= (size_t)tensors[i].shape[d];
        if (nbytes) ok = fs_write_all(fd, tensors[i].data, nbytes) == 0;
    }
    if (ok) { stage = "fsync"; ok = fsync(fd) == 0; }
    int saved = errno;
    if (close(fd) != 0 && ok) { stage = "close"; ok = 0; saved = errno; }
    if (ok) {
        stage = "rename";
        ok = rename(tmp, path) == 0;
        saved = errno;
    }
    if (!ok) {
        dt_errorf(err, errlen, "%s: %s of %s failed: %s (the previous file, if any, is unchanged)",
               path, stage, tmp, strerror(saved));
        unlink(tmp);
        free(header);
        free(tmp);
        return fs_errno_no_space(saved) ? FS_NO_SPACE : -1;
    }
    free(header);
    free(tmp);
    if (st_fsync_dir(path) != 0) {
        int e = errno;
        dt_errorf(err, errlen, "%s: written, but syncing its directory failed: %s", path,
               strerror(e));
        return fs_errno_no_space(e) ? FS_NO_SPACE : -1;
    }
    return 0;
}
