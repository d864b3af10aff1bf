/* fuzz_safetensors.c — the safetensors reader (engine/safetensors.c) and the model upload
 * check built on it (api/ingest_model.c: ingest_model, what POST /models runs), on arbitrary
 * file contents. The input is an in-memory file (memfd) opened through /proc/self/fd.
 *
 * Checked besides the sanitizers, for a file safetensors_open accepts: the header's promise
 * that callers may index tensor data without bounds checks (every tensor's bytes lie inside
 * the data section, which ends where the file ends; sizes agree with shape x dtype), every
 * float tensor converts, lookups by name find each tensor; and for ingest_model, an accepted
 * model has a kind, a config object and a SHA-256, a refused one a message.
 */
#include "fuzz_util.h"

#include <jansson.h>

#include "ingest.h"
#include "safetensors.h"

static void fuzz_st_check_open(const st_file *f) {
    const uint8_t *map = f->map;
    FUZZ_CHECK(f->data >= map + 8 && f->data + f->data_len == map + f->map_len,
               "data section outside the file");
    FUZZ_CHECK(f->n >= 0 && f->n_meta >= 0, "negative counts");
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS, "tensor %d: %d dims", i, t->ndim);
        FUZZ_CHECK(t->offset <= f->data_len && t->nbytes <= f->data_len - t->offset,
                   "tensor '%s' [%zu, +%zu) outside %zu data bytes", t->name, t->offset,
                   t->nbytes, f->data_len);
        FUZZ_CHECK(safetensors_numel(t) * safetensors_dtype_size(t->dtype) == t->nbytes,
                   "tensor '%s': shape and byte span disagree", t->name);
        FUZZ_CHECK(safetensors_find(f, t->name) != NULL, "tensor '%s' not found by name", t->name);
        size_t n = safetensors_numel(t);
        float *dst = malloc((n ? n : 1) * sizeof *dst);
        if (!dst) abort();
        char err[512];
        int rc = safetensors_read_f32(f, t->name, dst, n, err, sizeof err);
        int is_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 ||
                       t->dtype == ST_F64;
        /* Duplicate names cannot happen (the header refuses duplicate keys), so the tensor
         * found is this one and a float tensor always converts. */
        FUZZ_CHECK(is_float ? rc == 0 : rc == -1, "read_f32 of '%s' (%s) gave %d", t->name,
                   is_float ? "float" : "not float", rc);
        free(dst);
    }
    for (int i = 0; i < f->n_meta; i++)
        FUZZ_CHECK(safetensors_meta(f, f->meta_keys[i]) != NULL, "metadata key lost");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], err[512];
    int fd = fuzz_memfd(data, size, path, sizeof path);

    st_file f;
    if (safetensors_open(&f, path, err, sizeof err) == 0) {
        fuzz_st_check_open(&f);
        safetensors_close(&f);
    } else {
        FUZZ_CHECK(err[0], "refusal without a message");
        FUZZ_CHECK(f.map == NULL && f.tensors == NULL && f.path == NULL, "refusal left state");
    }

    dt_ingest_model m;
    int rc = ingest_model(path, NULL, &m, err, sizeof err);
    if (rc == DT_INGEST_OK) {
        FUZZ_CHECK(!strcmp(m.kind, "dit") || !strcmp(m.kind, "classifier"), "kind '%s'", m.kind);
        FUZZ_CHECK(json_is_object(m.config), "no config");
        FUZZ_CHECK(strlen(m.sha256) == 64 && m.bytes == (int64_t)size, "digest or size");
        json_decref(m.config);
    } else {
        FUZZ_CHECK(rc == DT_INGEST_INVALID || rc == DT_INGEST_ERROR, "code %d", rc);
        FUZZ_CHECK(err[0], "refusal without a message");
    }
    close(fd);
    return 0;
}
