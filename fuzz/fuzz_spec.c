/* fuzz_spec.c — the job-spec validator (engine/spec.c: spec_parse) on arbitrary bytes.
 *
 * Besides not crashing, leaking or tripping a sanitizer, it checks the properties the server
 * relies on:
 *   - a refusal fills a known error code, and its code, param and message are NUL-terminated;
 *   - an accepted spec prints (spec_to_json: never NULL for a spec that parsed), and its printed
 *     form parses back to the same spec byte for byte and prints the same again: the canonical
 *     JSON that is stored, hashed for Idempotency-Key and shown by GET /jobs/{id} is a fixed point;
 *   - spec_from_json on the already-decoded document agrees with spec_parse.
 */
#include "fuzz_util.h"

#include <jansson.h>

#include "spec.h"

static const char *const fuzz_spec_codes[] = {"invalid_json", "invalid_type", "invalid_value",
                                              "unknown_field", "missing_field", "unsupported",
                                              NULL};

static void fuzz_spec_check_error(const dt_spec_error *e) {
    FUZZ_CHECK(memchr(e->code, 0, sizeof e->code) && memchr(e->param, 0, sizeof e->param) &&
                   memchr(e->message, 0, sizeof e->message),
               "unterminated error field");
    int known = 0;
    for (int i = 0; fuzz_spec_codes[i]; i++) known |= !strcmp(e->code, fuzz_spec_codes[i]);
    FUZZ_CHECK(known, "unknown error code '%s'", e->code);
    FUZZ_CHECK(e->message[0], "empty message for code %s", e->code);
}

/* The canonical text of an accepted spec, as POST /jobs hashes it (malloc'd). */
static char *fuzz_spec_canonical(const dt_spec *s) {
    json_t *j = spec_to_json(s);
    FUZZ_CHECK(j != NULL, "spec_to_json refused a spec that parsed");
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    FUZZ_CHECK(text != NULL, "the printed spec cannot be dumped");
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static dt_spec spec, again;
    dt_spec_error e;
    int rc = spec_parse(&spec, (const char *)data, size, &e);
    if (rc) {
        FUZZ_CHECK(rc == -1, "spec_parse returned %d", rc);
        fuzz_spec_check_error(&e);
    }

    /* The same through spec_from_json, as `difftune train --spec` and the API's models do. */
    json_t *root = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (root) {
        dt_spec_error e2;
        int rc2 = spec_from_json(&again, root, &e2);
        json_decref(root);
        FUZZ_CHECK(rc2 == rc, "spec_from_json says %d, spec_parse %d", rc2, rc);
        if (rc) FUZZ_CHECK(!strcmp(e.code, e2.code) && !strcmp(e.param, e2.param), "errors differ");
        else FUZZ_CHECK(!memcmp(&spec, &again, sizeof spec), "specs differ");
    } else {
        FUZZ_CHECK(rc && !strcmp(e.code, "invalid_json"), "jansson refuses what spec_parse took");
    }
    if (rc) return 0;

    char *canon = fuzz_spec_canonical(&spec);
    int rc3 = spec_parse(&again, canon, strlen(canon), &e);
    FUZZ_CHECK(rc3 == 0, "the canonical spec is refused: %s: %s (%s)", e.code, e.message, canon);
    FUZZ_CHECK(!memcmp(&spec, &again, sizeof spec), "the canonical spec parses differently: %s", canon);
    char *canon2 = fuzz_spec_canonical(&again);
    FUZZ_CHECK(!strcmp(canon, canon2), "printing is not stable:\n%s\n%s", canon, canon2);
    free(canon);
    free(canon2);
    return 0;
}
