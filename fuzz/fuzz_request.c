/* fuzz_request.c — a POST /jobs request as the API reads it, up to the store: the body size and
 * nesting checks (api/http.c), the Idempotency-Key header check and the spec validation, id
 * checks, canonical form and request hash (api/jobs.c), on arbitrary bytes and no socket.
 *
 * Input layout: the Idempotency-Key header value up to the first newline (none when the input
 * has no newline; a value ends at its first NUL, as a header does), then the body.
 *
 * Checked besides the sanitizers:
 *   - api_json_depth equals the real depth of every body jansson can decode (duplicate keys
 *     refused, as the API's parsers do), so the nesting limit means what it says;
 *   - api_idempotency_key_valid accepts exactly 1..255 visible ASCII characters;
 *   - a refused spec can be told to the client: its param, which the error object carries, is
 *     valid UTF-8 (json_string refuses anything else and the param would be dropped);
 *   - an accepted spec has a canonical form, and its request hash is the same when the
 *     canonical form is sent again (what makes Idempotency-Key replays match).
 */
#include "fuzz_util.h"

#include <jansson.h>

#include "fsutil.h"
#include "http.h"
#include "spec.h"

#define FUZZ_MAX_JSON_BYTES (1 << 20) /* dt_api_opts.max_json_bytes default */

/* The nesting depth of a decoded value: 0 for a scalar, 1 + the deepest member otherwise. */
static int fuzz_json_tree_depth(json_t *v) {
    int d = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int c = fuzz_json_tree_depth(x);
            if (c > d) d = c;
        }
        return d + 1;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            int c = fuzz_json_tree_depth(x);
            if (c > d) d = c;
        }
        return d + 1;
    }
    return 0;
}

static int fuzz_key_reference(const char *k) {
    size_t n = strlen(k);
    if (n < 1 || n > 255) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e) return 0;
    return 1;
}

/* The request hash of an accepted spec, as api_jobs_create computes it. */
static void fuzz_request_hash(const dt_spec *s, char hash[65], char **canon) {
    json_t *full = spec_to_json(s);
    FUZZ_CHECK(full != NULL, "spec_to_json refused a spec that parsed");
    *canon = json_dumps(full, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(full);
    FUZZ_CHECK(*canon != NULL, "no canonical text");
    fs_sha256_hex(*canon, strlen(*canon), hash);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *head;
    size_t head_len;
    int has_key = fuzz_split(&data, &size, '\n', &head, &head_len);
    if (size > FUZZ_MAX_JSON_BYTES) return 0; /* 413 before the body is read */
    char *key = has_key ? fuzz_strndup(head, head_len) : NULL;
    char *body = fuzz_strndup(data, size); /* http.c keeps the body NUL-terminated too */

    /* http.c: nesting, then the handler. */
    int depth = api_json_depth(body, size);
    /* Without duplicate keys every value of the text is in the tree (jansson keeps only the
     * last of duplicates, which may be shallower than an earlier one: found by the campaign). */
    json_t *any = json_loadb(body, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (any) {
        int real = fuzz_json_tree_depth(any);
        FUZZ_CHECK(depth == real, "api_json_depth says %d, the document nests %d deep", depth, real);
        json_decref(any);
    }
    if (depth > API_JSON_MAX_DEPTH) goto done;

    /* jobs.c: api_jobs_create up to store_job_create. */
    if (key) {
        int ok = api_idempotency_key_valid(key);
        FUZZ_CHECK(ok == fuzz_key_reference(key), "Idempotency-Key '%s': valid says %d", key, ok);
        if (!ok) goto done;
    }
    static dt_spec spec, again;
    dt_spec_error se;
    if (spec_parse(&spec, body, size, &se)) {
        json_t *param = se.param[0] ? json_string(se.param) : NULL;
        FUZZ_CHECK(!se.param[0] || param, "the error's param is not valid UTF-8: '%s'", se.param);
        json_decref(param);
        goto done;
    }
    /* Ids the handler looks up (their existence is the store's business). */
    (void)api_id_valid(spec.dataset, "ds_");
    if (spec.base_model[0]) (void)api_id_valid(spec.base_model, "mdl_");
    const char *classifier = spec_eval_classifier(&spec);
    if (classifier) (void)api_id_valid(classifier, "mdl_");
    (void)api_id_valid(spec.forgetting.checkpoint, "job_");

    char hash[65], hash2[65], *canon, *canon2;
    fuzz_request_hash(&spec, hash, &canon);
    FUZZ_CHECK(spec_parse(&again, canon, strlen(canon), &se) == 0, "canonical refused: %s", se.message);
    fuzz_request_hash(&again, hash2, &canon2);
    FUZZ_CHECK(!strcmp(hash, hash2), "the replayed canonical request hashes differently:\n%s\n%s",
               canon, canon2);
    free(canon);
    free(canon2);
done:
    free(key);
    free(body);
    return 0;
}
