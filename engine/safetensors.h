/* safetensors.h — reading and writing the safetensors format.
 *
 * Format: 8-byte little-endian header length, a JSON header mapping tensor names to
 * {"dtype","shape","data_offsets":[begin,end]} (offsets relative to the data section) plus an
 * optional "__metadata__" object of string values, then the raw little-endian tensor bytes.
 * Files are opened with mmap; every header field is validated before any tensor is used.
 */
#ifndef DT_SAFETENSORS_H
#define DT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t offset; /* byte offset inside the data section */
    size_t nbytes;
} st_tensor;

typedef struct {
    char *path;
    st_tensor *tensors; /* (n) in header order */
    int n;
    char **meta_keys;   /* (n_meta) __metadata__ entries, strings */
    char **meta_values;
    int n_meta;
    const uint8_t *data; /* start of the data section inside the mapping */
    size_t data_len;
    void *map;
    size_t map_len;
} st_file;

/* Opens and validates `path` (header JSON, dtypes, shapes x dtype size == byte span, offsets in
 * range and non-overlapping). Returns 0, or -1 with a message in err naming the problem. */
int safetensors_open(st_file *f, const char *path, char *err, size_t errlen);
/* Unmaps and frees everything owned by f; safe on a zeroed or already-closed st_file. */
void safetensors_close(st_file *f);
/* The tensor called name, or NULL. */
const st_tensor *safetensors_find(const st_file *f, const char *name);
/* The __metadata__ value of key, or NULL; owned by f. */
const char *safetensors_meta(const st_file *f, const char *key);
/* Number of elements of t. */
size_t safetensors_numel(const st_tensor *t);
/* Copies tensor `name` into dst as float32, converting from F32/F16/BF16/F64. Fails (-1, message)
 * when the tensor is missing, of another dtype family, or its element count differs from n. */
int safetensors_read_f32(const st_file *f, const char *name, float *dst, size_t n,
                         char *err, size_t errlen);

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* numel x dtype size bytes, little-endian; borrowed */
} st_write_tensor;

/* Writes tensors and metadata (meta_kv: key, value, key, value, ..., NULL; may be NULL) to path
 * crash-safely: a temporary file beside it, fsync, rename over path, fsync of the directory.
 * Returns 0, or -1 with a message; FS_NO_SPACE (fsutil.h) instead of -1 when the file system
 * was full (ENOSPC, EDQUOT). A failure before the rename leaves path as it was and removes the
 * temporary file. */
int safetensors_write(const char *path, const st_write_tensor *tensors, int n,
                      const char *const *meta_kv, char *err, size_t errlen);

/* Bytes per element of dtype. */
size_t safetensors_dtype_size(st_dtype dt);

#endif
