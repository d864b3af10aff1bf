/* spec.c — job specifications: defaults, strict parsing with validation, canonical JSON.
 *
 * Validation is table-driven. Each object of the request (the top level, model, hyperparameters,
 * peft_options, diff_tuning, forgetting, eval, checkpoint) is a section: a table of fields, each with its JSON kind, the
 * dt_spec member it fills and its allowed range. spec_to_json walks the same tables, so the
 * printed spec keeps one stable key order and no field can be parsed but not printed.
 *
 * Strict on purpose, because a job that fails after an hour of knowledge-bank sampling is worse
 * than a 400: integers must be JSON integers (2.0 is rejected), numbers may be integers or reals,
 * booleans must be true/false, null is accepted only where it means "unset" (base_model, vae, peft,
 * peft_options.difffit_blocks and .alpha, model.num_classes, forgetting.checkpoint, webhook), unknown keys are errors at every level and duplicate keys are invalid JSON.
 * Checks run in this order: unknown keys of an object, then its fields one by one in table order
 * (type, then range), then that object's cross-field checks; the first failure is reported.
 *
 * The model object. For "pretrain" it defines the network to build: a named arch fills depth,
 * hidden_size, num_heads and patch_size from the DiT table (giving them too is allowed only with
 * the same values), "custom" requires all four. For "full" and "diff_tuning" the network comes
 * from the base model, so only arch, image_size, channels, learn_sigma and num_classes may appear
 * (still validated); the four sizes are rejected when given, are filled from arch (all 0 for
 * "custom", meaning "whatever the base model is") so the engine can compare them with the model
 * it loads, and are left out of spec_to_json.
 *
 * Method-specific sections (diff_tuning, forgetting, peft_options) are accepted and stored with
 * every method and read only by theirs. A peft (DiffFit, BitFit, LoRA: engine/peft.h) adapts a
 * base model, so it needs method full or diff_tuning, and it makes the learning_rate default
 * DT_PEFT_DIFFFIT_DEFAULT_LR (an explicit learning_rate is kept). "forgetting_curve" trains nothing: it measures forgetting.checkpoint
 * (a job or model id, or a path on the command line) against base_model on the held-out dataset;
 * its network is the base model's, so like fine-tuning it takes no architecture sizes.
 */
#include "spec.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SPEC_SEED_MAX 9007199254740992LL /* 2^53: every JSON reader keeps such integers exact */
#define SPEC_NUM_CLASSES_MAX 1000000      /* label-table rows; far beyond any real dataset */
#define SPEC_PATH_LEN sizeof(((dt_spec_error *)0)->param)

typedef enum {
    SPEC_INT,    /* int member; JSON integer in [imin, imax] */
    SPEC_U64,    /* uint64_t member; JSON integer in [imin, imax] */
    SPEC_NUM,    /* double member; JSON integer or real within [dmin, dmax] (ends open per flags) */
    SPEC_BOOL,   /* int member, 0 or 1; JSON true or false */
    SPEC_STR,    /* char[size] member; JSON string shorter than size, one of choices if given */
    SPEC_OBJECT, /* a nested section */
    SPEC_CUSTOM  /* own parse and emit functions */
} spec_kind;

enum {
    SPEC_MIN_OPEN = 1u << 0,     /* SPEC_NUM: dmin itself is not allowed */
    SPEC_MAX_OPEN = 1u << 1,     /* SPEC_NUM: dmax itself is not allowed */
    SPEC_NULLABLE = 1u << 2,     /* null means unset: 0 or "" in dt_spec, printed as null */
    SPEC_PRETRAIN_ONLY = 1u << 3 /* only method "pretrain" may give it; printed only then */
};

typedef struct spec_field spec_field;

typedef struct {
    const char *name;         /* JSON path prefix of the fields, "" at the top level */
    const spec_field *fields; /* (n) in canonical order */
    int n;
    /* Cross-field checks of the section, run after every present field parsed; bit i of seen
     * is set when fields[i] was present in the request. */
    int (*check)(dt_spec *s, unsigned seen, dt_spec_error *e);
} spec_section;

struct spec_field {
    const char *key;
    spec_kind kind;
    size_t offset;               /* of the member in dt_spec */
    size_t size;                 /* of the member, checked against the kind */
    unsigned flags;
    long long imin, imax;        /* SPEC_INT, SPEC_U64 */
    double dmin, dmax;           /* SPEC_NUM */
    const char *const *choices;  /* SPEC_STR: NULL-terminated allowed values, or NULL for any */
    const spec_section *section; /* SPEC_OBJECT */
    int (*parse)(dt_spec *s, json_t *v, const char *path, dt_spec_error *e); /* SPEC_CUSTOM */
    json_t *(*emit)(const dt_spec *s);                                       /* SPEC_CUSTOM */
};

#define SPEC_MEMBER(m) .offset = offsetof(dt_spec, m), .size = sizeof(((dt_spec *)0)->m)
#define SPEC_F_INT(k, m, lo, hi, fl) \
    { .key = (k), .kind = SPEC_INT, SPEC_MEMBER(m), .flags = (fl), .imin = (lo), .imax = (hi) }
#define SPEC_F_U64(k, m, lo, hi) \
    { .key = (k), .kind = SPEC_U64, SPEC_MEMBER(m), .imin = (lo), .imax = (hi) }
#define SPEC_F_NUM(k, m, lo, hi, fl) \
    { .key = (k), .kind = SPEC_NUM, SPEC_MEMBER(m), .flags = (fl), .dmin = (lo), .dmax = (hi) }
#define SPEC_F_BOOL(k, m) { .key = (k), .kind = SPEC_BOOL, SPEC_MEMBER(m) }
#define SPEC_F_STR(k, m, fl, ch) \
    { .key = (k), .kind = SPEC_STR, SPEC_MEMBER(m), .flags = (fl), .choices = (ch) }
#define SPEC_F_OBJECT(k, sec) { .key = (k), .kind = SPEC_OBJECT, .section = &(sec) }
#define SPEC_F_CUSTOM(k, p, em) { .key = (k), .kind = SPEC_CUSTOM, .parse = (p), .emit = (em) }

/* ---- errors ---------------------------------------------------------------------------------- */

static int spec_fail(dt_spec_error *e, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Cuts a string that was truncated to fit a buffer back to its last whole UTF-8 character: the
 * text quotes a user's JSON key or value (valid UTF-8), and the API sends param and message
 * as JSON strings, which must stay valid UTF-8 (found by fuzz/fuzz_request.c). */
static void spec_utf8_trim(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) /* continuation bytes */
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < want)
        s[i - 1] = '\0';
}

/* Fills e and returns -1, so that callers can `return spec_fail(...)`. */
static int spec_fail(dt_spec_error *e, const char *code, const char *param, const char *fmt, ...)
{
    va_list ap;
    snprintf(e->code, sizeof e->code, "%s", code);
    if (snprintf(e->param, sizeof e->param, "%s", param) >= (int)sizeof e->param)
        spec_utf8_trim(e->param);
    va_start(ap, fmt);
    if (vsnprintf(e->message, sizeof e->message, fmt, ap) >= (int)sizeof e->message)
        spec_utf8_trim(e->message);
    va_end(ap);
    return -1;
}

/* The JSON type of v as a message fragment: "got a real number" reads better than a type id. */
static const char *spec_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

static int spec_type_fail(const spec_field *f, const json_t *v, const char *path,
                          dt_spec_error *e)
{
    static const char *const wanted[] = {
        [SPEC_INT] = "an integer", [SPEC_U64] = "an integer", [SPEC_NUM] = "a number",
        [SPEC_BOOL] = "true or false", [SPEC_STR] = "a string", [SPEC_OBJECT] = "an object",
        [SPEC_CUSTOM] = "a valid value",
    };
    return spec_fail(e, "invalid_type", path, "%s must be %s%s (got %s)", path, wanted[f->kind],
                     (f->flags & SPEC_NULLABLE) ? " or null" : "", spec_json_kind(v));
}

/* prefix.key (or key at the top level) into dst, cut at a whole character when too long. */
static void spec_path(char *dst, size_t n, const char *prefix, const char *key)
{
    int len = prefix[0] ? snprintf(dst, n, "%s.%s", prefix, key) : snprintf(dst, n, "%s", key);
    if (len >= (int)n)
        spec_utf8_trim(dst);
}

/* ---- small helpers ---------------------------------------------------------------------------- */

/* Copies src into the char[size] dst, zero-filling the rest so that equal specs compare equal
 * byte for byte. src must fit (strlen(src) < size). */
static void spec_copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    assert(n < size);
    memset(dst, 0, size);
    memcpy(dst, src, n);
}

/* True when the JSON string v is exactly `want` (embedded NULs never match). */
static int spec_string_is(const json_t *v, const char *want)
{
    return json_string_length(v) == strlen(want) && strcmp(json_string_value(v), want) == 0;
}

/* Validates a JSON string for a char[size] destination: no NUL inside, shorter than size. */
static int spec_check_string(const json_t *v, size_t size, const char *path, dt_spec_error *e)
{
    size_t len = json_string_length(v);
    if (strlen(json_string_value(v)) != len)
        return spec_fail(e, "invalid_value", path, "%s must not contain NUL characters", path);
    if (len >= size)
        return spec_fail(e, "invalid_value", path, "%s is too long (%zu bytes, at most %zu)", path,
                         len, size - 1);
    return 0;
}

/* ---- the DiT configurations (shared/reference/dit.md) ----------------------------------------- */

static const struct {
    const char *size;
    int depth, hidden_size, num_heads;
} spec_dit_sizes[] = {
    {"S", 12, 384, 6},
    {"B", 12, 768, 12},
    {"L", 24, 1024, 16},
    {"XL", 28, 1152, 16},
};

static const char *const spec_arch_names[] = {
    "DiT-S/2", "DiT-S/4", "DiT-S/8", "DiT-B/2", "DiT-B/4", "DiT-B/8",
    "DiT-L/2", "DiT-L/4", "DiT-L/8", "DiT-XL/2", "DiT-XL/4", "DiT-XL/8", "custom", NULL,
};

/* Fills sizes = {depth, hidden_size, num_heads, patch_size} for a named arch ("DiT-XL/2").
 * Returns 0, or -1 for "custom" or anything else. */
static int spec_arch_sizes(const char *arch, int sizes[4])
{
    const char *slash = strchr(arch, '/');
    if (strncmp(arch, "DiT-", 4) != 0 || !slash)
        return -1;
    size_t size_len = (size_t)(slash - (arch + 4));
    int patch = slash[1] - '0';
    if (slash[2] != '\0' || (patch != 2 && patch != 4 && patch != 8))
        return -1;
    for (size_t i = 0; i < sizeof spec_dit_sizes / sizeof spec_dit_sizes[0]; i++) {
        if (strlen(spec_dit_sizes[i].size) == size_len &&
            strncmp(arch + 4, spec_dit_sizes[i].size, size_len) == 0) {
            sizes[0] = spec_dit_sizes[i].depth;
            sizes[1] = spec_dit_sizes[i].hidden_size;
            sizes[2] = spec_dit_sizes[i].num_heads;
            sizes[3] = patch;
            return 0;
        }
    }
    return -1;
}

/* ---- custom fields: method, device, eval.extractor ------------------------------------------- */

static const char *const spec_method_names[] = {
    [DT_METHOD_PRETRAIN] = "pretrain", [DT_METHOD_FULL] = "full",
    [DT_METHOD_DIFF_TUNING] = "diff_tuning", [DT_METHOD_FORGETTING_CURVE] = "forgetting_curve",
};

const char *spec_method_name(dt_method m)
{
    if ((unsigned)m < sizeof spec_method_names / sizeof spec_method_names[0])
        return spec_method_names[m];
    return "unknown";
}

static int spec_parse_method(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    if (!json_is_string(v))
        return spec_fail(e, "invalid_type", path, "%s must be a string (got %s)", path,
                         spec_json_kind(v));
    for (size_t m = 0; m < sizeof spec_method_names / sizeof spec_method_names[0]; m++) {
        if (spec_string_is(v, spec_method_names[m])) {
            s->method = (dt_method)m;
            return 0;
        }
    }
    return spec_fail(e, "invalid_value", path,
                     "%s must be \"pretrain\", \"full\", \"diff_tuning\" or \"forgetting_curve\" "
                     "(got \"%s\")", path, json_string_value(v));
}

static json_t *spec_emit_method(const dt_spec *s)
{
    return json_string(spec_method_name(s->method));
}

/* ---- peft and peft_options ------------------------------------------------------------------ */

static const char *const spec_peft_names[] = {
    [DT_PEFT_NONE] = "none", [DT_PEFT_DIFFFIT] = "difffit", [DT_PEFT_BITFIT] = "bitfit",
    [DT_PEFT_LORA] = "lora",
};

const char *spec_peft_name(dt_peft_kind k)
{
    if ((unsigned)k < sizeof spec_peft_names / sizeof spec_peft_names[0])
        return spec_peft_names[k];
    return "unknown";
}

int spec_peft_kind(const char *name)
{
    for (size_t k = 0; k < sizeof spec_peft_names / sizeof spec_peft_names[0]; k++)
        if (!strcmp(name, spec_peft_names[k]))
            return (int)k;
    return -1;
}

/* "peft": null (none) or a method name ("none" itself is not a value: null says it). A peft
 * changes the learning-rate default: hyperparameters come later in table order, so an explicit
 * learning_rate still wins. */
static int spec_parse_peft(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    if (json_is_null(v)) {
        s->peft.kind = DT_PEFT_NONE;
        return 0;
    }
    if (!json_is_string(v))
        return spec_fail(e, "invalid_type", path, "%s must be null or a string (got %s)", path,
                         spec_json_kind(v));
    for (int k = DT_PEFT_DIFFFIT; k <= DT_PEFT_LORA; k++) {
        if (spec_string_is(v, spec_peft_names[k])) {
            s->peft.kind = (dt_peft_kind)k;
            s->hp.learning_rate = DT_PEFT_DIFFFIT_DEFAULT_LR;
            return 0;
        }
    }
    return spec_fail(e, "invalid_value", path,
                     "%s must be null, \"difffit\", \"bitfit\" or \"lora\" (got \"%.80s\")", path,
                     json_string_value(v));
}

static json_t *spec_emit_peft(const dt_spec *s)
{
    return s->peft.kind == DT_PEFT_NONE ? json_null() : json_string(spec_peft_name(s->peft.kind));
}

/* peft_options.targets: a non-empty array of distinct target names, stored as bits. */
static const char *const spec_lora_target_names[] = {"qkv", "proj", "fc1", "fc2", NULL};

const char *spec_lora_target_name(int t)
{
    return t >= 0 && t < 4 ? spec_lora_target_names[t] : NULL;
}

static int spec_parse_targets(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    if (!json_is_array(v))
        return spec_fail(e, "invalid_type", path,
                         "%s must be an array of LoRA targets, e.g. [\"qkv\", \"proj\"] (got %s)",
                         path, spec_json_kind(v));
    if (json_array_size(v) == 0)
        return spec_fail(e, "invalid_value", path,
                         "%s must name at least one of \"qkv\", \"proj\", \"fc1\", \"fc2\" "
                         "(omit it for all four)", path);
    unsigned targets = 0;
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_string(x))
            return spec_fail(e, "invalid_type", path, "%s[%zu] must be a string (got %s)", path, i,
                             spec_json_kind(x));
        unsigned bit = 0;
        for (int t = 0; spec_lora_target_names[t] && !bit; t++)
            if (spec_string_is(x, spec_lora_target_names[t]))
                bit = 1u << t;
        if (!bit)
            return spec_fail(e, "invalid_value", path,
                             "%s[%zu] must be one of \"qkv\", \"proj\", \"fc1\", \"fc2\" "
                             "(got %s%.40s%s)", path, i, json_string_length(x) <= 40 ? "\"" : "",
                             json_string_length(x) <= 40 ? json_string_value(x) : "a longer string",
                             json_string_length(x) <= 40 ? "\"" : "");
        if (targets & bit)
            return spec_fail(e, "invalid_value", path, "%s names \"%s\" twice", path,
                             json_string_value(x));
        targets |= bit;
    }
    s->peft.targets = targets;
    return 0;
}

/* The targets in block order (qkv, proj, fc1, fc2), whatever order the request used. */
static json_t *spec_emit_targets(const dt_spec *s)
{
    json_t *a = json_array();
    for (int t = 0; a && spec_lora_target_names[t]; t++)
        if (s->peft.targets & (1u << t))
            json_array_append_new(a, json_string(spec_lora_target_names[t]));
    return a;
}

/* peft_options.alpha: null (= rank, resolved by spec_check_peft) or a finite number > 0. */
static int spec_parse_alpha(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    if (json_is_null(v)) {
        s->peft.alpha = 0;
        return 0;
    }
    if (!json_is_number(v))
        return spec_fail(e, "invalid_type", path, "%s must be a number or null (got %s)", path,
                         spec_json_kind(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x <= 0)
        return spec_fail(e, "invalid_value", path,
                         "%s must be > 0, or null for the rank (got %.15g)", path, x);
    s->peft.alpha = x;
    return 0;
}

/* Printed as the number it resolved to, never null. */
static json_t *spec_emit_alpha(const dt_spec *s)
{
    return json_real(s->peft.alpha > 0 ? s->peft.alpha : (double)s->peft.rank);
}

/* "auto", "cpu", "cuda" or "cuda:N"; N is decimal without sign or leading zeros, at most four
 * digits, so one device has one spelling (the scheduler compares them as strings). */
static int spec_device_valid(const char *d)
{
    if (!strcmp(d, "auto") || !strcmp(d, "cpu") || !strcmp(d, "cuda"))
        return 1;
    if (strncmp(d, "cuda:", 5) != 0)
        return 0;
    const char *n = d + 5;
    size_t len = strlen(n);
    if (len < 1 || len > 4 || (n[0] == '0' && len > 1))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (n[i] < '0' || n[i] > '9')
            return 0;
    return 1;
}

static int spec_parse_device(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    if (!json_is_string(v))
        return spec_fail(e, "invalid_type", path, "%s must be a string (got %s)", path,
                         spec_json_kind(v));
    const char *d = json_string_value(v);
    if (json_string_length(v) >= sizeof s->device || strlen(d) != json_string_length(v) ||
        !spec_device_valid(d))
        return spec_fail(e, "invalid_value", path,
                         "%s must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\" with N a "
                         "non-negative integer (got \"%s\")", path, d);
    spec_copy_str(s->device, sizeof s->device, d);
    return 0;
}

static json_t *spec_emit_device(const dt_spec *s)
{
    return json_stringn(s->device, strnlen(s->device, sizeof s->device));
}

/* eval.extractor: "inception", or "classifier:" and a model id (the API) or a file path (the
 * command line); which one, and whether it exists, is checked where it is resolved. */
#define SPEC_CLASSIFIER_PREFIX "classifier:"

static int spec_parse_extractor(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    if (!json_is_string(v))
        return spec_fail(e, "invalid_type", path, "%s must be a string (got %s)", path,
                         spec_json_kind(v));
    if (spec_check_string(v, sizeof s->eval.extractor, path, e))
        return -1;
    const char *x = json_string_value(v);
    size_t plen = strlen(SPEC_CLASSIFIER_PREFIX);
    int ok = !strcmp(x, "inception") ||
             (!strncmp(x, SPEC_CLASSIFIER_PREFIX, plen) && x[plen] != '\0');
    if (!ok)
        return spec_fail(e, "invalid_value", path,
                         "%s must be \"inception\" or \"classifier:<model id>\" (got \"%.80s\")",
                         path, x);
    spec_copy_str(s->eval.extractor, sizeof s->eval.extractor, x);
    return 0;
}

static json_t *spec_emit_extractor(const dt_spec *s)
{
    return json_stringn(s->eval.extractor, strnlen(s->eval.extractor, sizeof s->eval.extractor));
}

const char *spec_eval_classifier(const dt_spec *s)
{
    size_t plen = strlen(SPEC_CLASSIFIER_PREFIX);
    return strncmp(s->eval.extractor, SPEC_CLASSIFIER_PREFIX, plen) ? NULL : s->eval.extractor + plen;
}

/* ---- webhook -------------------------------------------------------------------------------- */

const char *const spec_webhook_event_names[] = {"status", "progress", "sample", "metric",
                                                "checkpoint", "log", "error", NULL};

unsigned spec_webhook_event_bit(const char *type)
{
    for (unsigned i = 0; type && spec_webhook_event_names[i]; i++)
        if (!strcmp(type, spec_webhook_event_names[i]))
            return 1u << i;
    return 0;
}

/* What is wrong with a webhook URL (a message fragment after "webhook.url "), or NULL. The
 * server connects to it, so it must be an absolute http(s) URL of printable ASCII with a host;
 * credentials are refused because the spec (and so the URL) is shown by GET /jobs/{id}. */
static const char *spec_webhook_url_problem(const char *url)
{
    size_t skip = !strncasecmp(url, "http://", 7) ? 7 : !strncasecmp(url, "https://", 8) ? 8 : 0;
    if (!skip)
        return "must start with http:// or https://";
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return "must be printable ASCII without spaces (percent-encode other characters)";
    const char *host = url + skip;
    size_t n = strcspn(host, "/?#");
    if (memchr(host, '@', n))
        return "must not hold a user name or password (the signature authenticates deliveries)";
    const char *port = NULL;
    size_t host_len;
    if (host[0] == '[') { /* an IPv6 literal */
        const char *close = memchr(host, ']', n);
        if (!close || close == host + 1)
            return "has an unterminated or empty [IPv6] host";
        for (const char *c = host + 1; c < close; c++)
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.')
                return "has an invalid [IPv6] host";
        if (close + 1 < host + n && close[1] != ':')
            return "has characters after its [IPv6] host";
        port = close + 1 < host + n ? close + 2 : NULL;
        host_len = (size_t)(close + 1 - host);
    } else {
        const char *colon = memchr(host, ':', n);
        host_len = colon ? (size_t)(colon - host) : n;
        port = colon ? colon + 1 : NULL;
        for (size_t i = 0; i < host_len; i++)
            if (!isalnum((unsigned char)host[i]) && !strchr("-._", host[i]))
                return "has an invalid host name (letters, digits, '-', '.' and '_' only)";
    }
    if (host_len == 0)
        return "has no host";
    if (port) {
        size_t digits = (size_t)(host + n - port);
        long value = 0;
        for (size_t i = 0; i < digits && value <= 65535; i++)
            value = isdigit((unsigned char)port[i]) ? value * 10 + (port[i] - '0') : 65536;
        if (digits == 0 || digits > 5 || value < 1 || value > 65535)
            return "has an invalid port (1..65535)";
    }
    return NULL;
}

/* webhook: null (none) or {"url": "http(s)://...", "events": [...]}, events defaulting to
 * ["status"]. An array cannot be a table field, hence a parser of its own with the same
 * order of checks: unknown keys, url, events. */
static int spec_parse_webhook(dt_spec *s, json_t *v, const char *path, dt_spec_error *e)
{
    memset(&s->webhook, 0, sizeof s->webhook);
    if (json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return spec_fail(e, "invalid_type", path,
                         "%s must be null or an object {\"url\", \"events\"} (got %s)", path,
                         spec_json_kind(v));
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x) {
        if (strcmp(key, "url") != 0 && strcmp(key, "events") != 0) {
            char p[SPEC_PATH_LEN];
            spec_path(p, sizeof p, path, key);
            return spec_fail(e, "unknown_field", p, "unknown field \"%s\"; %s has: url, events",
                             p, path);
        }
    }
    json_t *url = json_object_get(v, "url");
    if (!url)
        return spec_fail(e, "missing_field", "webhook.url",
                         "webhook.url is required: the http:// or https:// address the job's "
                         "events are POSTed to");
    if (!json_is_string(url))
        return spec_fail(e, "invalid_type", "webhook.url", "webhook.url must be a string (got %s)",
                         spec_json_kind(url));
    if (spec_check_string(url, sizeof s->webhook.url, "webhook.url", e))
        return -1;
    const char *why = spec_webhook_url_problem(json_string_value(url));
    if (why)
        return spec_fail(e, "invalid_value", "webhook.url", "webhook.url %s", why);

    unsigned events = DT_SPEC_WEBHOOK_STATUS;
    json_t *list = json_object_get(v, "events");
    if (list) {
        if (!json_is_array(list))
            return spec_fail(e, "invalid_type", "webhook.events",
                             "webhook.events must be an array of event types, e.g. [\"status\", "
                             "\"checkpoint\"] (got %s)", spec_json_kind(list));
        if (json_array_size(list) == 0)
            return spec_fail(e, "invalid_value", "webhook.events",
                             "webhook.events must name at least one event type (omit webhook, or "
                             "set it to null, for none)");
        events = 0;
        size_t i;
        json_array_foreach(list, i, x) {
            if (!json_is_string(x))
                return spec_fail(e, "invalid_type", "webhook.events",
                                 "webhook.events[%zu] must be a string (got %s)", i,
                                 spec_json_kind(x));
            unsigned bit = strlen(json_string_value(x)) == json_string_length(x)
                               ? spec_webhook_event_bit(json_string_value(x))
                               : 0;
            /* the value is quoted only when short: a cut could split a UTF-8 character */
            if (!bit)
                return spec_fail(e, "invalid_value", "webhook.events",
                                 "webhook.events[%zu] must be one of \"status\", \"progress\", "
                                 "\"sample\", \"metric\", \"checkpoint\", \"log\", \"error\" "
                                 "(got %s%s%s)", i, json_string_length(x) <= 40 ? "\"" : "",
                                 json_string_length(x) <= 40 ? json_string_value(x) : "a longer string",
                                 json_string_length(x) <= 40 ? "\"" : "");
            events |= bit; /* a type named twice is the same filter */
        }
    }
    spec_copy_str(s->webhook.url, sizeof s->webhook.url, json_string_value(url));
    s->webhook.events = events;
    return 0;
}

/* null without a url; else the url and the event types in their canonical (bit) order. */
static json_t *spec_emit_webhook(const dt_spec *s)
{
    size_t n = strnlen(s->webhook.url, sizeof s->webhook.url);
    if (!n)
        return json_null();
    json_t *events = json_array();
    for (unsigned i = 0; events && spec_webhook_event_names[i]; i++)
        if (s->webhook.events & (1u << i))
            json_array_append_new(events, json_string(spec_webhook_event_names[i]));
    json_t *url = json_stringn(s->webhook.url, n);
    if (!events || !url) {
        json_decref(events);
        json_decref(url);
        return NULL;
    }
    return json_pack("{s:o, s:o}", "url", url, "events", events);
}

/* ---- cross-field checks --------------------------------------------------------------------- */

static int spec_seen(const spec_section *sec, unsigned seen, const char *key);

static int spec_check_peft(dt_spec *s, unsigned seen, dt_spec_error *e);

static int spec_check_model(dt_spec *s, unsigned seen, dt_spec_error *e);
static int spec_check_forgetting(dt_spec *s, unsigned seen, dt_spec_error *e);
static int spec_check_job(dt_spec *s, unsigned seen, dt_spec_error *e);

/* ---- the tables ------------------------------------------------------------------------------ */

static const spec_field spec_model_fields[] = {
    SPEC_F_STR("arch", model.arch, 0, spec_arch_names),
    SPEC_F_INT("depth", model.depth, 1, 64, SPEC_PRETRAIN_ONLY),
    SPEC_F_INT("hidden_size", model.hidden_size, 8, 4096, SPEC_PRETRAIN_ONLY),
    SPEC_F_INT("num_heads", model.num_heads, 1, 64, SPEC_PRETRAIN_ONLY),
    SPEC_F_INT("patch_size", model.patch_size, 1, 8, SPEC_PRETRAIN_ONLY), /* {1,2,4,8}: check */
    SPEC_F_INT("image_size", model.image_size, 1, 1024, 0),
    SPEC_F_INT("channels", model.channels, 1, 16, 0),
    SPEC_F_BOOL("learn_sigma", model.learn_sigma),
    SPEC_F_INT("num_classes", model.num_classes, 1, SPEC_NUM_CLASSES_MAX, SPEC_NULLABLE),
};

static const char *const spec_precision_names[] = {"auto", "bf16", "fp32", NULL};

static const spec_field spec_hp_fields[] = {
    SPEC_F_INT("steps", hp.steps, 1, INT_MAX, 0),
    SPEC_F_INT("batch_size", hp.batch_size, 1, 4096, 0),
    SPEC_F_NUM("learning_rate", hp.learning_rate, 0, INFINITY, SPEC_MIN_OPEN),
    SPEC_F_NUM("weight_decay", hp.weight_decay, 0, INFINITY, 0),
    SPEC_F_NUM("ema_decay", hp.ema_decay, 0, 1, SPEC_MAX_OPEN),
    SPEC_F_NUM("class_dropout", hp.class_dropout, 0, 1, 0),
    SPEC_F_NUM("grad_clip", hp.grad_clip, 0, INFINITY, 0),
    SPEC_F_INT("grad_accum", hp.grad_accum, 1, 4096, 0), /* and divides batch_size: check */
    SPEC_F_U64("seed", hp.seed, 0, SPEC_SEED_MAX),
    SPEC_F_STR("precision", hp.precision, 0, spec_precision_names),
};

static const char *const spec_sampler_names[] = {"ddpm", "ddim", NULL};

static const spec_field spec_dt_fields[] = {
    SPEC_F_NUM("power", diff_tuning.power, 0, 4, 0),
    SPEC_F_NUM("replay_ratio", diff_tuning.replay_ratio, 0, 1, SPEC_MAX_OPEN),
    SPEC_F_NUM("replay_weight", diff_tuning.replay_weight, 0, INFINITY, 0),
    SPEC_F_INT("bank_size", diff_tuning.bank_size, 1, INT_MAX, 0),
    SPEC_F_STR("bank_sampler", diff_tuning.bank_sampler, 0, spec_sampler_names),
    SPEC_F_INT("bank_steps", diff_tuning.bank_steps, 1, 1000, 0),
    SPEC_F_NUM("bank_cfg", diff_tuning.bank_cfg, 1, INFINITY, 0),
};

/* forgetting.switch_points: 0 or 2..DT_SPEC_SWITCH_POINTS_MAX (1 is refused by the check) */
static const spec_field spec_forgetting_fields[] = {
    SPEC_F_STR("checkpoint", forgetting.checkpoint, SPEC_NULLABLE, NULL),
    SPEC_F_INT("buckets", forgetting.buckets, 1, DT_SPEC_FORGETTING_BUCKETS_MAX, 0),
    SPEC_F_INT("loss_images", forgetting.loss_images, 1, INT_MAX, 0),
    SPEC_F_INT("switch_points", forgetting.switch_points, 0, DT_SPEC_SWITCH_POINTS_MAX, 0),
    SPEC_F_INT("samples", forgetting.samples, 2, INT_MAX, 0),
};

static const spec_field spec_eval_fields[] = {
    SPEC_F_INT("sample_every", eval.sample_every, 0, INT_MAX, 0),
    SPEC_F_INT("fid_every", eval.fid_every, 0, INT_MAX, 0),
    SPEC_F_INT("fid_samples", eval.fid_samples, 2, INT_MAX, 0),
    SPEC_F_CUSTOM("extractor", spec_parse_extractor, spec_emit_extractor),
    SPEC_F_STR("sampler", eval.sampler, 0, spec_sampler_names),
    SPEC_F_INT("steps", eval.steps, 1, 1000, 0),
    SPEC_F_NUM("cfg", eval.cfg, 1, INFINITY, 0),
};

/* Options of every peft, each read only by the one it concerns; whether they fit the base model
 * (difffit_blocks at most its depth, a rank its layers can hold) is known once it is read. */
static const spec_field spec_peft_fields[] = {
    SPEC_F_INT("difffit_blocks", peft.difffit_blocks, 1, 64, SPEC_NULLABLE), /* model.depth's max */
    SPEC_F_INT("rank", peft.rank, 1, DT_LORA_RANK_MAX, 0),
    SPEC_F_CUSTOM("alpha", spec_parse_alpha, spec_emit_alpha),
    SPEC_F_CUSTOM("targets", spec_parse_targets, spec_emit_targets),
};

static const spec_field spec_ckpt_fields[] = {
    SPEC_F_INT("every", checkpoint.every, 1, INT_MAX, 0),
    SPEC_F_INT("keep", checkpoint.keep, 1, INT_MAX, 0),
};

#define SPEC_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const spec_section spec_model_section = {
    "model", spec_model_fields, SPEC_COUNT(spec_model_fields), spec_check_model};
static const spec_section spec_hp_section = {
    "hyperparameters", spec_hp_fields, SPEC_COUNT(spec_hp_fields), NULL};
static const spec_section spec_dt_section = {
    "diff_tuning", spec_dt_fields, SPEC_COUNT(spec_dt_fields), NULL};
static const spec_section spec_forgetting_section = {
    "forgetting", spec_forgetting_fields, SPEC_COUNT(spec_forgetting_fields), spec_check_forgetting};
static const spec_section spec_eval_section = {
    "eval", spec_eval_fields, SPEC_COUNT(spec_eval_fields), NULL};
static const spec_section spec_peft_section = {
    "peft_options", spec_peft_fields, SPEC_COUNT(spec_peft_fields), spec_check_peft};
static const spec_section spec_ckpt_section = {
    "checkpoint", spec_ckpt_fields, SPEC_COUNT(spec_ckpt_fields), NULL};

/* method comes before model: which model fields are allowed depends on it. */
static const spec_field spec_job_fields[] = {
    SPEC_F_STR("base_model", base_model, SPEC_NULLABLE, NULL),
    SPEC_F_STR("vae", vae, SPEC_NULLABLE, NULL),
    SPEC_F_STR("dataset", dataset, 0, NULL),
    SPEC_F_CUSTOM("method", spec_parse_method, spec_emit_method),
    SPEC_F_CUSTOM("peft", spec_parse_peft, spec_emit_peft),
    SPEC_F_OBJECT("peft_options", spec_peft_section),
    SPEC_F_OBJECT("model", spec_model_section),
    SPEC_F_OBJECT("hyperparameters", spec_hp_section),
    SPEC_F_OBJECT("diff_tuning", spec_dt_section),
    SPEC_F_OBJECT("forgetting", spec_forgetting_section),
    SPEC_F_OBJECT("eval", spec_eval_section),
    SPEC_F_OBJECT("checkpoint", spec_ckpt_section),
    SPEC_F_CUSTOM("device", spec_parse_device, spec_emit_device),
    SPEC_F_INT("priority", priority, -100, 100, 0),
    SPEC_F_CUSTOM("webhook", spec_parse_webhook, spec_emit_webhook),
};

static const spec_section spec_job_section = {
    "", spec_job_fields, SPEC_COUNT(spec_job_fields), spec_check_job};

/* ---- parsing --------------------------------------------------------------------------------- */

static int spec_field_index(const spec_section *sec, const char *key)
{
    for (int i = 0; i < sec->n; i++)
        if (strcmp(sec->fields[i].key, key) == 0)
            return i;
    return -1;
}

static int spec_seen(const spec_section *sec, unsigned seen, const char *key)
{
    int i = spec_field_index(sec, key);
    assert(i >= 0);
    return (seen >> i) & 1u;
}

static int spec_int_range_fail(const spec_field *f, long long x, const char *path,
                               dt_spec_error *e)
{
    if (f->imax == INT_MAX && x >= f->imin) /* unbounded in the contract; the int is the limit */
        return spec_fail(e, "invalid_value", path, "%s must be at most %d (got %lld)", path,
                         INT_MAX, x);
    if (f->imax == INT_MAX)
        return spec_fail(e, "invalid_value", path, "%s must be >= %lld (got %lld)", path, f->imin,
                         x);
    return spec_fail(e, "invalid_value", path, "%s must be between %lld and %lld%s (got %lld)",
                     path, f->imin, f->imax, (f->flags & SPEC_NULLABLE) ? ", or null" : "", x);
}

static int spec_num_range_fail(const spec_field *f, double x, const char *path, dt_spec_error *e)
{
    const char *lo = (f->flags & SPEC_MIN_OPEN) ? ">" : ">=";
    const char *hi = (f->flags & SPEC_MAX_OPEN) ? "<" : "<=";
    if (isinf(f->dmax))
        return spec_fail(e, "invalid_value", path, "%s must be %s %g (got %.15g)", path, lo,
                         f->dmin, x);
    return spec_fail(e, "invalid_value", path, "%s must be %s %g and %s %g (got %.15g)", path, lo,
                     f->dmin, hi, f->dmax, x);
}

static int spec_parse_section(dt_spec *s, const spec_section *sec, json_t *obj,
                              dt_spec_error *e);

/* Parses one present field into s. path is its full JSON path. */
static int spec_parse_field(dt_spec *s, const spec_field *f, json_t *v, const char *path,
                            dt_spec_error *e)
{
    char *dst = (char *)s + f->offset;

    if ((f->flags & SPEC_PRETRAIN_ONLY) && s->method != DT_METHOD_PRETRAIN)
        return spec_fail(e, "invalid_value", path,
                         "%s comes from the base model with method \"%s\"; omit it (only "
                         "pretrain defines the architecture)", path, spec_method_name(s->method));
    if ((f->flags & SPEC_NULLABLE) && json_is_null(v)) {
        memset(dst, 0, f->size);
        return 0;
    }
    switch (f->kind) {
    case SPEC_INT: {
        assert(f->size == sizeof(int) && f->imin >= INT_MIN && f->imax <= INT_MAX);
        if (!json_is_integer(v))
            return spec_type_fail(f, v, path, e);
        long long x = json_integer_value(v);
        if (x < f->imin || x > f->imax)
            return spec_int_range_fail(f, x, path, e);
        *(int *)dst = (int)x;
        return 0;
    }
    case SPEC_U64: {
        assert(f->size == sizeof(uint64_t) && f->imin >= 0);
        if (!json_is_integer(v))
            return spec_type_fail(f, v, path, e);
        long long x = json_integer_value(v);
        if (x < f->imin || x > f->imax)
            return spec_fail(e, "invalid_value", path,
                             "%s must be between %lld and %lld (got %lld)", path, f->imin,
                             f->imax, x);
        *(uint64_t *)dst = (uint64_t)x;
        return 0;
    }
    case SPEC_NUM: {
        assert(f->size == sizeof(double));
        if (!json_is_number(v))
            return spec_type_fail(f, v, path, e);
        double x = json_number_value(v);
        int ok = isfinite(x) && ((f->flags & SPEC_MIN_OPEN) ? x > f->dmin : x >= f->dmin) &&
                 ((f->flags & SPEC_MAX_OPEN) ? x < f->dmax : x <= f->dmax);
        if (!ok)
            return spec_num_range_fail(f, x, path, e);
        *(double *)dst = x;
        return 0;
    }
    case SPEC_BOOL:
        assert(f->size == sizeof(int));
        if (!json_is_boolean(v))
            return spec_type_fail(f, v, path, e);
        *(int *)dst = json_is_true(v) ? 1 : 0;
        return 0;
    case SPEC_STR: {
        if (!json_is_string(v))
            return spec_type_fail(f, v, path, e);
        if (f->choices) {
            int found = 0;
            for (int i = 0; f->choices[i] && !found; i++)
                found = spec_string_is(v, f->choices[i]);
            if (!found) {
                char list[200] = "";
                size_t used = 0;
                for (int i = 0; f->choices[i] && used < sizeof list; i++)
                    used += (size_t)snprintf(list + used, sizeof list - used, "%s\"%s\"",
                                             i ? ", " : "", f->choices[i]);
                return spec_fail(e, "invalid_value", path, "%s must be one of %s (got \"%s\")",
                                 path, list, json_string_value(v));
            }
        }
        if (spec_check_string(v, f->size, path, e))
            return -1;
        spec_copy_str(dst, f->size, json_string_value(v));
        return 0;
    }
    case SPEC_OBJECT:
        if (!json_is_object(v))
            return spec_type_fail(f, v, path, e);
        return spec_parse_section(s, f->section, v, e);
    case SPEC_CUSTOM:
        return f->parse(s, v, path, e);
    }
    assert(!"unreachable");
    return -1;
}

/* Parses the JSON object obj as section sec: unknown keys first (a typo is reported as the typo,
 * not as whatever it leaves missing), then every present field in table order, then the checks. */
static int spec_parse_section(dt_spec *s, const spec_section *sec, json_t *obj,
                              dt_spec_error *e)
{
    char path[SPEC_PATH_LEN];
    const char *key;
    json_t *v;
    unsigned seen = 0;

    assert(sec->n <= 32);
    json_object_foreach(obj, key, v) {
        if (spec_field_index(sec, key) >= 0)
            continue;
        char allowed[200] = "";
        size_t used = 0;
        for (int i = 0; i < sec->n && used < sizeof allowed; i++)
            used += (size_t)snprintf(allowed + used, sizeof allowed - used, "%s%s",
                                     i ? ", " : "", sec->fields[i].key);
        spec_path(path, sizeof path, sec->name, key);
        return spec_fail(e, "unknown_field", path, "unknown field \"%s\"; %s has: %s", path,
                         sec->name[0] ? sec->name : "the job request", allowed);
    }
    for (int i = 0; i < sec->n; i++) {
        v = json_object_get(obj, sec->fields[i].key);
        if (!v)
            continue;
        seen |= 1u << i;
        spec_path(path, sizeof path, sec->name, sec->fields[i].key);
        if (spec_parse_field(s, &sec->fields[i], v, path, e))
            return -1;
    }
    return sec->check ? sec->check(s, seen, e) : 0;
}

/* The architecture: fill or compare the four sizes against arch (see the top of the file), then
 * the shape rules the DiT layers rely on. */
static int spec_check_model(dt_spec *s, unsigned seen, dt_spec_error *e)
{
    static const char *const keys[4] = {"depth", "hidden_size", "num_heads", "patch_size"};
    int *sizes[4] = {&s->model.depth, &s->model.hidden_size, &s->model.num_heads,
                     &s->model.patch_size};
    int named[4];
    int is_named = spec_arch_sizes(s->model.arch, named) == 0;
    int pretrain = s->method == DT_METHOD_PRETRAIN;

    for (int k = 0; k < 4; k++) {
        char path[SPEC_PATH_LEN];
        int given = spec_seen(&spec_model_section, seen, keys[k]);
        spec_path(path, sizeof path, "model", keys[k]);
        if (is_named) {
            if (given && *sizes[k] != named[k])
                return spec_fail(e, "invalid_value", path, "%s must be %d for %s (got %d); set "
                                 "model.arch to \"custom\" for other sizes", path, named[k],
                                 s->model.arch, *sizes[k]);
            *sizes[k] = named[k];
        } else if (pretrain) {
            if (!given)
                return spec_fail(e, "missing_field", path,
                                 "%s is required when model.arch is \"custom\"", path);
        } else {
            *sizes[k] = 0; /* whatever the base model is */
        }
    }
    if (!is_named && !pretrain)
        return 0; /* the sizes are unknown until the base model loads; image_size range checked */

    int D = s->model.hidden_size, H = s->model.num_heads, p = s->model.patch_size;
    int img = s->model.image_size;
    if (p != 1 && p != 2 && p != 4 && p != 8)
        return spec_fail(e, "invalid_value", "model.patch_size",
                         "model.patch_size must be 1, 2, 4 or 8 (got %d)", p);
    if (D % 4 != 0)
        return spec_fail(e, "invalid_value", "model.hidden_size",
                         "model.hidden_size must be a multiple of 4 (the 2D sin-cos position "
                         "embedding splits it in quarters) (got %d)", D);
    if (D % H != 0)
        return spec_fail(e, "invalid_value", "model.num_heads",
                         "model.num_heads must divide model.hidden_size (%d) (got %d)", D, H);
    if ((D / H) % 2 != 0)
        return spec_fail(e, "invalid_value", "model.num_heads",
                         "model.hidden_size / model.num_heads (the head dimension, %d / %d = %d) "
                         "must be even", D, H, D / H);
    if (img < p || img % p != 0)
        return spec_fail(e, "invalid_value", "model.image_size",
                         "model.image_size must be a multiple of model.patch_size (%d) (got %d)",
                         p, img);
    return 0;
}

/* forgetting.switch_points: the hybrid curve needs both ends (k = 0 and k = T), or none. */
static int spec_check_forgetting(dt_spec *s, unsigned seen, dt_spec_error *e)
{
    (void)seen;
    if (s->forgetting.switch_points == 1)
        return spec_fail(e, "invalid_value", "forgetting.switch_points",
                         "forgetting.switch_points must be 0 (no hybrid curve) or between 2 and %d "
                         "(switch timesteps 0, T/(P-1), ..., T) (got 1)", DT_SPEC_SWITCH_POINTS_MAX);
    return 0;
}

/* peft_options.alpha left out or null is the rank, so that alpha / rank = 1 (spec_defaults has
 * the default rank's). */
static int spec_check_peft(dt_spec *s, unsigned seen, dt_spec_error *e)
{
    (void)e;
    if (!spec_seen(&spec_peft_section, seen, "alpha") || s->peft.alpha == 0)
        s->peft.alpha = s->peft.rank;
    return 0;
}

/* Checks across sections, after the whole request parsed. */
static int spec_check_job(dt_spec *s, unsigned seen, dt_spec_error *e)
{
    const char *method = spec_method_name(s->method);
    int analysis = s->method == DT_METHOD_FORGETTING_CURVE;
    (void)seen;

    /* An empty string is treated like an absent one: neither names anything to load. */
    if (!s->dataset[0])
        return spec_fail(e, "missing_field", "dataset",
                         analysis ? "dataset is required: the id (ds_...) or path of the held-out "
                                    "target images the models are measured on"
                                  : "dataset is required: the id (ds_...) or path of the training "
                                    "images");
    if (s->method == DT_METHOD_PRETRAIN && s->base_model[0])
        return spec_fail(e, "invalid_value", "base_model",
                         "pretrain trains from scratch; omit base_model (or use method \"full\" "
                         "or \"diff_tuning\" to fine-tune it)");
    if (s->method != DT_METHOD_PRETRAIN && !s->base_model[0])
        return spec_fail(e, "missing_field", "base_model",
                         "base_model is required for method \"%s\": the id (mdl_...) or path of "
                         "%s", method, analysis ? "the base model the checkpoint was fine-tuned from"
                                                : "the model to fine-tune");
    /* A latent DiT needs its VAE; which VAE, and whether its latent channels match the DiT's, is
     * known once the files are read (the engine checks, and the API checks stored models). */
    if (analysis && s->vae[0])
        return spec_fail(e, "invalid_value", "vae",
                         "vae: method \"forgetting_curve\" does not support latent DiTs yet; it "
                         "measures pixel-space models only (omit vae)");
    if (s->method == DT_METHOD_PRETRAIN && !s->vae[0] && s->model.channels == 4)
        return spec_fail(e, "invalid_value", "vae",
                         "model.channels 4 is a latent DiT: set vae to the VAE whose latents it "
                         "models (the SD VAE, id mdl_... or path), or use 1 or 3 channels for "
                         "pixel space");
    if (analysis && !s->forgetting.checkpoint[0])
        return spec_fail(e, "missing_field", "forgetting.checkpoint",
                         "forgetting.checkpoint is required for method \"forgetting_curve\": the "
                         "fine-tuned model to measure, a job id (job_...: its newest checkpoint) or "
                         "a model id (mdl_...)");
    if (s->peft.kind != DT_PEFT_NONE && s->method != DT_METHOD_FULL &&
        s->method != DT_METHOD_DIFF_TUNING)
        return spec_fail(e, "invalid_value", "peft",
                         "peft \"%s\" adapts a base model: it needs method \"full\" or "
                         "\"diff_tuning\", not \"%s\" (omit peft or set it to null)",
                         spec_peft_name(s->peft.kind), method);
    if (s->hp.batch_size % s->hp.grad_accum != 0)
        return spec_fail(e, "invalid_value", "hyperparameters.grad_accum",
                         "hyperparameters.grad_accum (%d) must divide hyperparameters.batch_size "
                         "(%d)", s->hp.grad_accum, s->hp.batch_size);
    if (s->method == DT_METHOD_DIFF_TUNING) {
        /* Step 2 of the algorithm: floor(B * replay_ratio) bank samples, the rest downstream.
         * replay_ratio < 1 already implies one downstream sample; kept against rounding. */
        int bank = (int)floor(s->hp.batch_size * s->diff_tuning.replay_ratio);
        if (s->hp.batch_size - bank < 1)
            return spec_fail(e, "invalid_value", "diff_tuning.replay_ratio",
                             "diff_tuning.replay_ratio (%g) leaves no downstream samples in a "
                             "batch of %d", s->diff_tuning.replay_ratio, s->hp.batch_size);
    }
    return 0;
}

/* ---- public ---------------------------------------------------------------------------------- */

void spec_defaults(dt_spec *s)
{
    memset(s, 0, sizeof *s); /* also zeroes padding and string tails: equal specs memcmp equal */
    s->method = DT_METHOD_DIFF_TUNING;

    spec_copy_str(s->model.arch, sizeof s->model.arch, "DiT-S/2");
    s->model.depth = 12;
    s->model.hidden_size = 384;
    s->model.num_heads = 6;
    s->model.patch_size = 2;
    s->model.image_size = 32;
    s->model.channels = 3;
    s->model.learn_sigma = 1;
    s->model.num_classes = 0;

    s->hp.steps = 2000;
    s->hp.batch_size = 32;
    s->hp.learning_rate = 1e-4;
    s->hp.weight_decay = 0.0;
    s->hp.ema_decay = 0.9999;
    s->hp.class_dropout = 0.1;
    s->hp.grad_clip = 0.0;
    s->hp.grad_accum = 1;
    s->hp.seed = 0;

    s->peft.kind = DT_PEFT_NONE;
    s->peft.difffit_blocks = 0; /* half the depth, rounded up */
    s->peft.rank = 8;
    s->peft.alpha = 8.0;        /* the rank: what null resolves to */
    s->peft.targets = DT_LORA_ALL;

    s->diff_tuning.power = 1.0;
    s->diff_tuning.replay_ratio = 0.2;
    s->diff_tuning.replay_weight = 0.1;
    s->diff_tuning.bank_size = 5000;
    spec_copy_str(s->hp.precision, sizeof s->hp.precision, "auto");
    spec_copy_str(s->diff_tuning.bank_sampler, sizeof s->diff_tuning.bank_sampler, "ddpm");
    s->diff_tuning.bank_steps = 250;
    s->diff_tuning.bank_cfg = 1.5;

    s->forgetting.buckets = 10;
    s->forgetting.loss_images = 256;
    s->forgetting.switch_points = 11;
    s->forgetting.samples = 1000;

    s->eval.sample_every = 500;
    s->eval.fid_every = 1000;
    s->eval.fid_samples = 5000;
    spec_copy_str(s->eval.extractor, sizeof s->eval.extractor, "inception");
    spec_copy_str(s->eval.sampler, sizeof s->eval.sampler, "ddim");
    s->eval.steps = 50;
    s->eval.cfg = 1.5;

    s->checkpoint.every = 1000;
    s->checkpoint.keep = 3;

    spec_copy_str(s->device, sizeof s->device, "auto");
    s->priority = 0;
}

/* root is borrowed. s starts from the defaults; e is cleared, then filled on failure. */
int spec_from_json(dt_spec *s, json_t *root, dt_spec_error *e)
{
    dt_spec_error scratch;
    if (!e)
        e = &scratch;
    memset(e, 0, sizeof *e);
    spec_defaults(s);
    if (!root || !json_is_object(root))
        return spec_fail(e, "invalid_type", "", "the job request must be a JSON object (got %s)",
                         root ? spec_json_kind(root) : "nothing");
    return spec_parse_section(s, &spec_job_section, root, e);
}

/* Any JSON value is decoded so that a non-object root is reported as invalid_type rather than as
 * a syntax error; duplicate keys are syntax errors (which one would win is not obvious). */
int spec_parse(dt_spec *s, const char *json_text, size_t len, dt_spec_error *e)
{
    dt_spec_error scratch;
    json_error_t jerr;
    if (!e)
        e = &scratch;
    memset(e, 0, sizeof *e);
    json_t *root = json_loadb(json_text ? json_text : "", json_text ? len : 0,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        spec_defaults(s);
        return spec_fail(e, "invalid_json", "", "invalid JSON at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
    }
    int rc = spec_from_json(s, root, e);
    json_decref(root);
    return rc;
}

static json_t *spec_emit_section(const dt_spec *s, const spec_section *sec);

/* One field as a new JSON value, or NULL when jansson refuses it (out of memory, a string that is
 * not UTF-8, a non-finite double). */
static json_t *spec_emit_field(const dt_spec *s, const spec_field *f)
{
    const char *src = (const char *)s + f->offset;
    switch (f->kind) {
    case SPEC_INT: {
        int x = *(const int *)src;
        return (f->flags & SPEC_NULLABLE) && x == 0 ? json_null() : json_integer(x);
    }
    case SPEC_U64:
        return json_integer((json_int_t) * (const uint64_t *)src);
    case SPEC_NUM:
        return json_real(*(const double *)src);
    case SPEC_BOOL:
        return json_boolean(*(const int *)src);
    case SPEC_STR: {
        size_t n = strnlen(src, f->size);
        return (f->flags & SPEC_NULLABLE) && n == 0 ? json_null() : json_stringn(src, n);
    }
    case SPEC_OBJECT:
        return spec_emit_section(s, f->section);
    case SPEC_CUSTOM:
        return f->emit(s);
    }
    assert(!"unreachable");
    return NULL;
}

static json_t *spec_emit_section(const dt_spec *s, const spec_section *sec)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (int i = 0; i < sec->n; i++) {
        const spec_field *f = &sec->fields[i];
        if ((f->flags & SPEC_PRETRAIN_ONLY) && s->method != DT_METHOD_PRETRAIN)
            continue;
        /* set_new takes the value's reference even when it fails, and refuses NULL */
        if (json_object_set_new(obj, f->key, spec_emit_field(s, f)) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* Keys in table order (jansson keeps insertion order; dump with JSON_PRESERVE_ORDER to be
 * explicit). Returns NULL when jansson cannot represent a field (see spec_emit_field). */
json_t *spec_to_json(const dt_spec *s)
{
    return spec_emit_section(s, &spec_job_section);
}
