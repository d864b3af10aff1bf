/* test_spec.c — the job specification: defaults, the DESIGN.md example, the canonical JSON and
 * its round trip, and at least one bad value and one bad type for every field, each with the
 * exact error code and param. */
#include "spec.h"
#include "check.h"

#include <string.h>

/* DESIGN.md section 3, comments removed. */
static const char *const EXAMPLE =
    "{\n"
    "  \"base_model\": \"mdl_...\",\n"
    "  \"dataset\": \"ds_...\",\n"
    "  \"method\": \"diff_tuning\",\n"
    "  \"peft\": null,\n"
    "  \"model\": {\"arch\": \"DiT-S/2\", \"image_size\": 32, \"channels\": 3, \"learn_sigma\": true,\n"
    "            \"num_classes\": 10},\n"
    "  \"hyperparameters\": {\"steps\": 2000, \"batch_size\": 32, \"learning_rate\": 1e-4, \"ema_decay\": 0.9999,\n"
    "                      \"seed\": 0, \"class_dropout\": 0.1},\n"
    "  \"diff_tuning\": {\"power\": 1.0, \"replay_ratio\": 0.2, \"replay_weight\": 0.1,\n"
    "                  \"bank_size\": 5000, \"bank_sampler\": \"ddpm\", \"bank_steps\": 250, \"bank_cfg\": 1.5},\n"
    "  \"eval\": {\"sample_every\": 500, \"fid_every\": 1000, \"fid_samples\": 5000},\n"
    "  \"checkpoint\": {\"every\": 1000, \"keep\": 3},\n"
    "  \"device\": \"auto\",\n"
    "  \"priority\": 0\n"
    "}\n";

/* A from-scratch custom DiT, the base for the architecture fields only pretrain may set. */
static const char *const PRETRAIN =
    "{\"dataset\": \"/data/mnist\", \"method\": \"pretrain\", \"model\": {\"arch\": \"custom\","
    " \"depth\": 4, \"hidden_size\": 128, \"num_heads\": 4, \"patch_size\": 2, \"image_size\": 28,"
    " \"channels\": 1}}";

static int parse_str(dt_spec *s, const char *text, dt_spec_error *e)
{
    return spec_parse(s, text, strlen(text), e);
}

/* ---- field-by-field comparison (so a failure names the field) -------------------------------- */

static void check_spec_equal(const dt_spec *a, const dt_spec *b, const char *what)
{
#define EQ_I(f) CHECK(a->f == b->f, "%s: " #f " %lld vs %lld", what, (long long)a->f, (long long)b->f)
#define EQ_D(f) CHECK(a->f == b->f, "%s: " #f " %.17g vs %.17g", what, a->f, b->f)
#define EQ_S(f) CHECK(strcmp(a->f, b->f) == 0, "%s: " #f " \"%s\" vs \"%s\"", what, a->f, b->f)
    EQ_S(base_model); EQ_S(vae); EQ_S(dataset); EQ_I(method);
    EQ_I(peft.kind); EQ_I(peft.difffit_blocks); EQ_I(peft.rank); EQ_D(peft.alpha);
    EQ_I(peft.targets);
    EQ_S(model.arch); EQ_I(model.depth); EQ_I(model.hidden_size); EQ_I(model.num_heads);
    EQ_I(model.patch_size); EQ_I(model.image_size); EQ_I(model.channels);
    EQ_I(model.learn_sigma); EQ_I(model.num_classes);
    EQ_I(hp.steps); EQ_I(hp.batch_size); EQ_D(hp.learning_rate); EQ_D(hp.weight_decay);
    EQ_D(hp.ema_decay); EQ_D(hp.class_dropout); EQ_D(hp.grad_clip); EQ_I(hp.grad_accum);
    EQ_I(hp.seed); EQ_S(hp.precision);
    EQ_D(diff_tuning.power); EQ_D(diff_tuning.replay_ratio); EQ_D(diff_tuning.replay_weight);
    EQ_I(diff_tuning.bank_size); EQ_S(diff_tuning.bank_sampler); EQ_I(diff_tuning.bank_steps);
    EQ_D(diff_tuning.bank_cfg);
    EQ_S(forgetting.checkpoint); EQ_I(forgetting.buckets); EQ_I(forgetting.loss_images);
    EQ_I(forgetting.switch_points); EQ_I(forgetting.samples);
    EQ_I(eval.sample_every); EQ_I(eval.fid_every); EQ_I(eval.fid_samples);
    EQ_S(eval.extractor); EQ_S(eval.sampler); EQ_I(eval.steps); EQ_D(eval.cfg);
    EQ_I(checkpoint.every); EQ_I(checkpoint.keep);
    EQ_S(device); EQ_I(priority);
    EQ_S(webhook.url); EQ_I(webhook.events);
    /* spec_defaults zeroes padding and string tails, so equal specs are equal bytes too; this
     * catches a field added to dt_spec but forgotten in the tables */
    CHECK(memcmp(a, b, sizeof *a) == 0, "%s: specs differ byte-wise", what);
#undef EQ_I
#undef EQ_D
#undef EQ_S
}

/* ---- defaults and the example ---------------------------------------------------------------- */

static void test_defaults(void)
{
    dt_spec s;
    memset(&s, 0x5a, sizeof s);
    spec_defaults(&s);
    CHECK(s.base_model[0] == 0 && s.dataset[0] == 0, "empty strings");
    CHECK(s.peft.kind == DT_PEFT_NONE && s.peft.difffit_blocks == 0 && s.peft.rank == 8 &&
          s.peft.alpha == 8.0 && s.peft.targets == DT_LORA_ALL, "peft defaults");
    CHECK(s.method == DT_METHOD_DIFF_TUNING, "method %d", s.method);
    CHECK(!strcmp(s.model.arch, "DiT-S/2"), "arch %s", s.model.arch);
    CHECK(s.model.depth == 12 && s.model.hidden_size == 384 && s.model.num_heads == 6 &&
          s.model.patch_size == 2, "DiT-S/2 sizes");
    CHECK(s.model.image_size == 32 && s.model.channels == 3 && s.model.learn_sigma == 1 &&
          s.model.num_classes == 0, "model defaults");
    CHECK(s.hp.steps == 2000 && s.hp.batch_size == 32 && s.hp.grad_accum == 1 && s.hp.seed == 0,
          "hp integers");
    CHECK(s.hp.learning_rate == 1e-4 && s.hp.weight_decay == 0 && s.hp.ema_decay == 0.9999 &&
          s.hp.class_dropout == 0.1 && s.hp.grad_clip == 0, "hp reals");
    CHECK(s.diff_tuning.power == 1.0 && s.diff_tuning.replay_ratio == 0.2 &&
          s.diff_tuning.replay_weight == 0.1 && s.diff_tuning.bank_size == 5000 &&
          !strcmp(s.diff_tuning.bank_sampler, "ddpm") && s.diff_tuning.bank_steps == 250 &&
          s.diff_tuning.bank_cfg == 1.5, "diff_tuning defaults");
    CHECK(s.forgetting.checkpoint[0] == 0 && s.forgetting.buckets == 10 &&
          s.forgetting.loss_images == 256 && s.forgetting.switch_points == 11 &&
          s.forgetting.samples == 1000, "forgetting defaults");
    CHECK(s.eval.sample_every == 500 && s.eval.fid_every == 1000 && s.eval.fid_samples == 5000,
          "eval defaults");
    CHECK(!strcmp(s.eval.extractor, "inception") && !strcmp(s.eval.sampler, "ddim") &&
          s.eval.steps == 50 && s.eval.cfg == 1.5, "eval sampling defaults");
    CHECK(spec_eval_classifier(&s) == NULL, "inception names no classifier");
    CHECK(s.checkpoint.every == 1000 && s.checkpoint.keep == 3, "checkpoint defaults");
    CHECK(!strcmp(s.device, "auto") && s.priority == 0, "device/priority defaults");

    /* the minimal request gets exactly the defaults */
    dt_spec p, want;
    dt_spec_error e;
    int rc = parse_str(&p, "{\"base_model\":\"mdl_1\",\"dataset\":\"ds_1\"}", &e);
    CHECK(rc == 0, "minimal request: %s %s", e.code, e.message);
    CHECK(e.code[0] == 0 && e.param[0] == 0 && e.message[0] == 0, "error cleared on success");
    spec_defaults(&want);
    strcpy(want.base_model, "mdl_1");
    strcpy(want.dataset, "ds_1");
    check_spec_equal(&p, &want, "minimal request");

    CHECK(!strcmp(spec_method_name(DT_METHOD_PRETRAIN), "pretrain") &&
          !strcmp(spec_method_name(DT_METHOD_FULL), "full") &&
          !strcmp(spec_method_name(DT_METHOD_DIFF_TUNING), "diff_tuning") &&
          !strcmp(spec_method_name(DT_METHOD_FORGETTING_CURVE), "forgetting_curve"),
          "method names");
    CHECK(!strcmp(spec_peft_name(DT_PEFT_NONE), "none") &&
          !strcmp(spec_peft_name(DT_PEFT_DIFFFIT), "difffit") &&
          !strcmp(spec_peft_name(DT_PEFT_BITFIT), "bitfit") &&
          !strcmp(spec_peft_name(DT_PEFT_LORA), "lora"), "peft names");
}

static void test_example(void)
{
    dt_spec s;
    dt_spec_error e;
    int rc = parse_str(&s, EXAMPLE, &e);
    CHECK(rc == 0, "DESIGN.md example: %s %s: %s", e.code, e.param, e.message);
    CHECK(!strcmp(s.base_model, "mdl_...") && !strcmp(s.dataset, "ds_..."), "ids");
    CHECK(s.method == DT_METHOD_DIFF_TUNING && s.peft.kind == DT_PEFT_NONE, "method, peft");
    CHECK(!strcmp(s.model.arch, "DiT-S/2") && s.model.image_size == 32 && s.model.channels == 3 &&
          s.model.learn_sigma == 1 && s.model.num_classes == 10, "model");
    CHECK(s.model.depth == 12 && s.model.hidden_size == 384 && s.model.num_heads == 6 &&
          s.model.patch_size == 2, "sizes filled from the arch");
    CHECK(s.hp.steps == 2000 && s.hp.batch_size == 32 && s.hp.learning_rate == 1e-4 &&
          s.hp.ema_decay == 0.9999 && s.hp.seed == 0 && s.hp.class_dropout == 0.1 &&
          !strcmp(s.hp.precision, "auto"), "hp");
    CHECK(s.diff_tuning.power == 1.0 && s.diff_tuning.replay_ratio == 0.2 &&
          s.diff_tuning.replay_weight == 0.1 && s.diff_tuning.bank_size == 5000 &&
          !strcmp(s.diff_tuning.bank_sampler, "ddpm") && s.diff_tuning.bank_steps == 250 &&
          s.diff_tuning.bank_cfg == 1.5, "diff_tuning");
    CHECK(s.eval.sample_every == 500 && s.eval.fid_every == 1000 && s.eval.fid_samples == 5000,
          "eval");
    CHECK(s.checkpoint.every == 1000 && s.checkpoint.keep == 3, "checkpoint");
    CHECK(!strcmp(s.device, "auto") && s.priority == 0, "device, priority");

    /* every field away from its default, through the text parser */
    const char *all =
        "{\"base_model\":\"/models/dit-b4.safetensors\",\"dataset\":\"/data/flowers\","
        "\"method\":\"full\",\"model\":{\"arch\":\"DiT-B/4\",\"image_size\":64,\"channels\":4,"
        "\"learn_sigma\":false,\"num_classes\":102},\"hyperparameters\":{\"steps\":7,"
        "\"batch_size\":48,\"learning_rate\":3e-5,\"weight_decay\":0.01,\"ema_decay\":0,"
        "\"class_dropout\":1,\"grad_clip\":1.5,\"grad_accum\":3,\"seed\":9007199254740992,"
        "\"precision\":\"fp32\"},"
        "\"diff_tuning\":{\"power\":0.5,\"replay_ratio\":0,\"replay_weight\":2,\"bank_size\":1,"
        "\"bank_sampler\":\"ddim\",\"bank_steps\":1000,\"bank_cfg\":1},"
        "\"forgetting\":{\"checkpoint\":\"job_0123\",\"buckets\":100,\"loss_images\":1,"
        "\"switch_points\":1001,\"samples\":2},\"eval\":{\"sample_every\":0,"
        "\"fid_every\":0,\"fid_samples\":2,\"extractor\":\"classifier:mdl_0123\",\"sampler\":\"ddpm\","
        "\"steps\":1000,\"cfg\":4.5},\"checkpoint\":{\"every\":1,\"keep\":1},"
        "\"device\":\"cuda:3\",\"priority\":-100}";
    rc = parse_str(&s, all, &e);
    CHECK(rc == 0, "all fields: %s %s: %s", e.code, e.param, e.message);
    CHECK(s.method == DT_METHOD_FULL && !strcmp(s.base_model, "/models/dit-b4.safetensors") &&
          !strcmp(s.dataset, "/data/flowers"), "top level");
    CHECK(!strcmp(s.model.arch, "DiT-B/4") && s.model.depth == 12 && s.model.hidden_size == 768 &&
          s.model.num_heads == 12 && s.model.patch_size == 4 && s.model.image_size == 64 &&
          s.model.channels == 4 && s.model.learn_sigma == 0 && s.model.num_classes == 102, "model");
    CHECK(s.hp.steps == 7 && s.hp.batch_size == 48 && s.hp.learning_rate == 3e-5 &&
          s.hp.weight_decay == 0.01 && s.hp.ema_decay == 0 && s.hp.class_dropout == 1 &&
          s.hp.grad_clip == 1.5 && s.hp.grad_accum == 3 &&
          s.hp.seed == 9007199254740992ull && !strcmp(s.hp.precision, "fp32"), "hp");
    CHECK(s.diff_tuning.power == 0.5 && s.diff_tuning.replay_ratio == 0 &&
          s.diff_tuning.replay_weight == 2 && s.diff_tuning.bank_size == 1 &&
          !strcmp(s.diff_tuning.bank_sampler, "ddim") && s.diff_tuning.bank_steps == 1000 &&
          s.diff_tuning.bank_cfg == 1, "diff_tuning");
    CHECK(!strcmp(s.forgetting.checkpoint, "job_0123") && s.forgetting.buckets == 100 &&
          s.forgetting.loss_images == 1 && s.forgetting.switch_points == 1001 &&
          s.forgetting.samples == 2, "forgetting");
    CHECK(s.eval.sample_every == 0 && s.eval.fid_every == 0 && s.eval.fid_samples == 2, "eval");
    CHECK(!strcmp(s.eval.extractor, "classifier:mdl_0123") && !strcmp(s.eval.sampler, "ddpm") &&
          s.eval.steps == 1000 && s.eval.cfg == 4.5, "eval sampling");
    CHECK(spec_eval_classifier(&s) && !strcmp(spec_eval_classifier(&s), "mdl_0123"),
          "the classifier named by eval.extractor");
    CHECK(s.checkpoint.every == 1 && s.checkpoint.keep == 1, "checkpoint");
    CHECK(!strcmp(s.device, "cuda:3") && s.priority == -100, "device, priority");

    /* the XL table row, pretrain with a named arch and equal explicit sizes */
    rc = parse_str(&s, "{\"dataset\":\"d\",\"method\":\"pretrain\",\"model\":{\"arch\":\"DiT-XL/8\","
                       "\"depth\":28,\"hidden_size\":1152,\"num_heads\":16,\"patch_size\":8,"
                       "\"image_size\":1024}}", &e);
    CHECK(rc == 0, "XL/8 with equal sizes: %s %s", e.param, e.message);
    CHECK(s.model.depth == 28 && s.model.hidden_size == 1152 && s.model.num_heads == 16 &&
          s.model.patch_size == 8 && s.model.image_size == 1024, "XL/8 sizes");
    rc = parse_str(&s, "{\"dataset\":\"d\",\"method\":\"pretrain\",\"model\":{\"arch\":\"DiT-L/2\"}}",
                   &e);
    CHECK(rc == 0 && s.model.depth == 24 && s.model.hidden_size == 1024 &&
          s.model.num_heads == 16 && s.model.patch_size == 2, "L/2 filled: %s", e.message);

    /* custom pretrain */
    rc = parse_str(&s, PRETRAIN, &e);
    CHECK(rc == 0, "custom pretrain: %s %s: %s", e.code, e.param, e.message);
    CHECK(s.method == DT_METHOD_PRETRAIN && s.base_model[0] == 0 && !strcmp(s.model.arch, "custom")
          && s.model.depth == 4 && s.model.hidden_size == 128 && s.model.num_heads == 4 &&
          s.model.patch_size == 2 && s.model.image_size == 28 && s.model.channels == 1,
          "custom model");

    /* custom with diff_tuning: the sizes are the base model's, unknown here */
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"model\":{\"arch\":\"custom\","
                       "\"image_size\":30}}", &e);
    CHECK(rc == 0, "custom diff_tuning: %s %s", e.param, e.message);
    CHECK(s.model.depth == 0 && s.model.hidden_size == 0 && s.model.num_heads == 0 &&
          s.model.patch_size == 0 && s.model.image_size == 30, "custom diff_tuning sizes are 0");

    /* forgetting_curve: a base model, held-out data and the checkpoint to measure */
    rc = parse_str(&s, "{\"method\":\"forgetting_curve\",\"base_model\":\"mdl_1\",\"dataset\":"
                       "\"ds_1\",\"forgetting\":{\"checkpoint\":\"job_1\",\"switch_points\":0}}",
                   &e);
    CHECK(rc == 0, "forgetting_curve: %s %s: %s", e.code, e.param, e.message);
    CHECK(s.method == DT_METHOD_FORGETTING_CURVE && !strcmp(s.forgetting.checkpoint, "job_1") &&
          s.forgetting.switch_points == 0 && s.forgetting.buckets == 10 &&
          s.forgetting.loss_images == 256 && s.forgetting.samples == 1000,
          "forgetting_curve fields, the rest defaults");
}

/* Valid requests at the edges of the ranges; each must parse. */
static void test_accepted(void)
{
    static const char *const ok[] = {
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"device\":\"cuda:0\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"device\":\"cuda:15\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"device\":\"cuda:9999\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"device\":\"cuda\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"device\":\"cpu\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"priority\":100}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":null}",
        /* every peft with both training methods, options at their edges */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"bitfit\",\"method\":\"full\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\",\"method\":\"full\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\",\"peft_options\":{\"rank\":1,"
        "\"alpha\":1e-9,\"targets\":[\"fc2\"]}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\",\"peft_options\":{\"rank\":256,"
        "\"alpha\":null,\"targets\":[\"fc2\",\"fc1\",\"proj\",\"qkv\"]}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\",\"peft_options\":"
        "{\"difffit_blocks\":1}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\",\"peft_options\":"
        "{\"difffit_blocks\":64}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\",\"peft_options\":"
        "{\"difffit_blocks\":null}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\",\"peft_options\":{}}",
        /* the options are accepted (and ignored) without a peft, like diff_tuning with full */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft_options\":{\"rank\":4}}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"peft\":null,\"peft_options\":{\"rank\":4}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"full\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"model\":{\"num_classes\":null}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"model\":{\"num_classes\":1000000}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"hyperparameters\":{\"learning_rate\":1}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"hyperparameters\":{\"batch_size\":4096,\"grad_accum\":4096}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"hyperparameters\":{\"batch_size\":1},"
        "\"diff_tuning\":{\"replay_ratio\":0.5}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"hyperparameters\":{\"batch_size\":1},"
        "\"diff_tuning\":{\"replay_ratio\":0.9999999999999999}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"diff_tuning\":{\"power\":4,\"replay_ratio\":0.0}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"eval\":{\"fid_samples\":2}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"eval\":{\"extractor\":\"inception\",\"steps\":1,"
        "\"cfg\":1}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"eval\":{\"extractor\":\"classifier:/x/c.safetensors\"}}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"base_model\":null}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"base_model\":\"\"}",
        /* a latent DiT names its VAE; null and "" mean pixel space */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"vae\":\"mdl_1\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"vae\":null}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"vae\":\"\",\"method\":\"full\"}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"vae\":\"/x/vae.safetensors\",\"model\":"
        "{\"arch\":\"DiT-XL/2\",\"image_size\":32,\"channels\":4}}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"model\":{\"arch\":\"custom\",\"depth\":1,"
        "\"hidden_size\":8,\"num_heads\":2,\"patch_size\":1,\"image_size\":1}}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"model\":{\"arch\":\"custom\",\"depth\":64,"
        "\"hidden_size\":4096,\"num_heads\":64,\"patch_size\":8,\"image_size\":1024,\"channels\":16}}",
        /* the diff_tuning object is accepted (and ignored by the engine) with other methods */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"full\",\"diff_tuning\":{\"power\":2}}",
        /* ... and so is the forgetting object, without a checkpoint too */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"forgetting\":{\"buckets\":3}}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"forgetting\":{\"checkpoint\":\"job_1\"}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"forgetting\":{\"checkpoint\":null}}",
        /* forgetting_curve at the edges */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"forgetting_curve\",\"forgetting\":"
        "{\"checkpoint\":\"mdl_1\",\"buckets\":1,\"loss_images\":1,\"switch_points\":2,"
        "\"samples\":2}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"forgetting_curve\",\"forgetting\":"
        "{\"checkpoint\":\"/x/step_0000010.safetensors\",\"buckets\":100,\"switch_points\":1001}}",
        /* webhooks: null, every event type, the URL forms a receiver may have */
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":null}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":\"http://h\"}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":\"HTTPS://hooks.example.com:8443/"
        "a/b?token=x%20y#frag\",\"events\":[\"status\",\"progress\",\"sample\",\"metric\","
        "\"checkpoint\",\"log\",\"error\"]}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"events\":[\"log\",\"log\"],"
        "\"url\":\"http://[::1]:65535\"}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":\"http://127.0.0.1:1/x\"}}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        dt_spec s;
        dt_spec_error e;
        int rc = parse_str(&s, ok[i], &e);
        CHECK(rc == 0, "accepted[%zu] %s: %s %s: %s", i, ok[i], e.code, e.param, e.message);
    }
}

/* ---- one bad thing at a time ----------------------------------------------------------------- */

enum { BASE_EXAMPLE, BASE_PRETRAIN };

typedef struct {
    int base;
    const char *patch; /* JSON object merged recursively into the base, or NULL */
    const char *del;   /* "key" or "section.key" removed from the base afterwards, or NULL */
    const char *code;
    const char *param;
} bad_case;

static const bad_case bad_cases[] = {
    /* base_model */
    {BASE_EXAMPLE, "{\"base_model\":5}", NULL, "invalid_type", "base_model"},
    {BASE_EXAMPLE, "{\"base_model\":[]}", NULL, "invalid_type", "base_model"},
    {BASE_EXAMPLE, NULL, "base_model", "missing_field", "base_model"},
    {BASE_EXAMPLE, "{\"base_model\":null}", NULL, "missing_field", "base_model"},
    {BASE_EXAMPLE, "{\"base_model\":\"\"}", NULL, "missing_field", "base_model"},
    {BASE_EXAMPLE, "{\"method\":\"full\",\"base_model\":null}", NULL, "missing_field", "base_model"},
    {BASE_PRETRAIN, "{\"base_model\":\"mdl_1\"}", NULL, "invalid_value", "base_model"},
    /* vae */
    {BASE_EXAMPLE, "{\"vae\":4}", NULL, "invalid_type", "vae"},
    {BASE_EXAMPLE, "{\"vae\":{}}", NULL, "invalid_type", "vae"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"vae\":\"mdl_1\",\"forgetting\":"
     "{\"checkpoint\":\"job_1\"}}", NULL, "invalid_value", "vae"},
    {BASE_PRETRAIN, "{\"model\":{\"channels\":4}}", NULL, "invalid_value", "vae"},
    /* dataset */
    {BASE_EXAMPLE, "{\"dataset\":true}", NULL, "invalid_type", "dataset"},
    {BASE_EXAMPLE, "{\"dataset\":null}", NULL, "invalid_type", "dataset"},
    {BASE_EXAMPLE, NULL, "dataset", "missing_field", "dataset"},
    {BASE_EXAMPLE, "{\"dataset\":\"\"}", NULL, "missing_field", "dataset"},
    {BASE_PRETRAIN, NULL, "dataset", "missing_field", "dataset"},
    /* method */
    {BASE_EXAMPLE, "{\"method\":1}", NULL, "invalid_type", "method"},
    {BASE_EXAMPLE, "{\"method\":null}", NULL, "invalid_type", "method"},
    {BASE_EXAMPLE, "{\"method\":\"finetune\"}", NULL, "invalid_value", "method"},
    {BASE_EXAMPLE, "{\"method\":\"Full\"}", NULL, "invalid_value", "method"},
    /* peft */
    {BASE_EXAMPLE, "{\"peft\":3}", NULL, "invalid_type", "peft"},
    {BASE_EXAMPLE, "{\"peft\":{}}", NULL, "invalid_type", "peft"},
    {BASE_EXAMPLE, "{\"peft\":[\"lora\"]}", NULL, "invalid_type", "peft"},
    {BASE_EXAMPLE, "{\"peft\":true}", NULL, "invalid_type", "peft"},
    {BASE_EXAMPLE, "{\"peft\":\"qlora\"}", NULL, "invalid_value", "peft"},
    {BASE_EXAMPLE, "{\"peft\":\"\"}", NULL, "invalid_value", "peft"},
    {BASE_EXAMPLE, "{\"peft\":\"none\"}", NULL, "invalid_value", "peft"}, /* null says it */
    {BASE_EXAMPLE, "{\"peft\":\"LoRA\"}", NULL, "invalid_value", "peft"},
    /* a peft adapts a base model: not with pretrain or forgetting_curve */
    {BASE_PRETRAIN, "{\"peft\":\"lora\"}", NULL, "invalid_value", "peft"},
    {BASE_PRETRAIN, "{\"peft\":\"bitfit\"}", NULL, "invalid_value", "peft"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"peft\":\"difffit\",\"forgetting\":"
     "{\"checkpoint\":\"job_1\"}}", NULL, "invalid_value", "peft"},
    /* peft_options */
    {BASE_EXAMPLE, "{\"peft_options\":[]}", NULL, "invalid_type", "peft_options"},
    {BASE_EXAMPLE, "{\"peft_options\":null}", NULL, "invalid_type", "peft_options"},
    {BASE_EXAMPLE, "{\"peft\":\"lora\",\"peft_options\":{\"r\":8}}", NULL, "unknown_field",
     "peft_options.r"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"difffit_blocks\":\"14\"}}", NULL, "invalid_type",
     "peft_options.difffit_blocks"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"difffit_blocks\":14.0}}", NULL, "invalid_type",
     "peft_options.difffit_blocks"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"difffit_blocks\":0}}", NULL, "invalid_value",
     "peft_options.difffit_blocks"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"difffit_blocks\":-1}}", NULL, "invalid_value",
     "peft_options.difffit_blocks"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"difffit_blocks\":65}}", NULL, "invalid_value",
     "peft_options.difffit_blocks"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"rank\":8.0}}", NULL, "invalid_type", "peft_options.rank"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"rank\":null}}", NULL, "invalid_type", "peft_options.rank"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"rank\":0}}", NULL, "invalid_value", "peft_options.rank"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"rank\":257}}", NULL, "invalid_value", "peft_options.rank"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"alpha\":\"16\"}}", NULL, "invalid_type",
     "peft_options.alpha"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"alpha\":true}}", NULL, "invalid_type", "peft_options.alpha"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"alpha\":0}}", NULL, "invalid_value", "peft_options.alpha"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"alpha\":-8}}", NULL, "invalid_value", "peft_options.alpha"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":\"qkv\"}}", NULL, "invalid_type",
     "peft_options.targets"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":null}}", NULL, "invalid_type",
     "peft_options.targets"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":[\"qkv\",1]}}", NULL, "invalid_type",
     "peft_options.targets"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":[]}}", NULL, "invalid_value",
     "peft_options.targets"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":[\"qkv\",\"out\"]}}", NULL, "invalid_value",
     "peft_options.targets"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":[\"QKV\"]}}", NULL, "invalid_value",
     "peft_options.targets"},
    {BASE_EXAMPLE, "{\"peft_options\":{\"targets\":[\"fc1\",\"proj\",\"fc1\"]}}", NULL,
     "invalid_value", "peft_options.targets"},
    /* the sections themselves */
    {BASE_EXAMPLE, "{\"model\":[]}", NULL, "invalid_type", "model"},
    {BASE_EXAMPLE, "{\"model\":null}", NULL, "invalid_type", "model"},
    {BASE_EXAMPLE, "{\"hyperparameters\":1}", NULL, "invalid_type", "hyperparameters"},
    {BASE_EXAMPLE, "{\"diff_tuning\":\"x\"}", NULL, "invalid_type", "diff_tuning"},
    {BASE_EXAMPLE, "{\"eval\":[1]}", NULL, "invalid_type", "eval"},
    {BASE_EXAMPLE, "{\"checkpoint\":true}", NULL, "invalid_type", "checkpoint"},
    {BASE_EXAMPLE, "{\"forgetting\":\"job_1\"}", NULL, "invalid_type", "forgetting"},
    {BASE_EXAMPLE, "{\"forgetting\":null}", NULL, "invalid_type", "forgetting"},
    /* device */
    {BASE_EXAMPLE, "{\"device\":5}", NULL, "invalid_type", "device"},
    {BASE_EXAMPLE, "{\"device\":null}", NULL, "invalid_type", "device"},
    {BASE_EXAMPLE, "{\"device\":\"gpu\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:-1\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:x\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:01\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:+1\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:0 \"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"cuda:12345\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"CPU\"}", NULL, "invalid_value", "device"},
    {BASE_EXAMPLE, "{\"device\":\"\"}", NULL, "invalid_value", "device"},
    /* priority */
    {BASE_EXAMPLE, "{\"priority\":101}", NULL, "invalid_value", "priority"},
    {BASE_EXAMPLE, "{\"priority\":-101}", NULL, "invalid_value", "priority"},
    {BASE_EXAMPLE, "{\"priority\":1.5}", NULL, "invalid_type", "priority"},
    {BASE_EXAMPLE, "{\"priority\":\"1\"}", NULL, "invalid_type", "priority"},
    /* model.arch */
    {BASE_EXAMPLE, "{\"model\":{\"arch\":2}}", NULL, "invalid_type", "model.arch"},
    {BASE_EXAMPLE, "{\"model\":{\"arch\":\"DiT-M/2\"}}", NULL, "invalid_value", "model.arch"},
    {BASE_EXAMPLE, "{\"model\":{\"arch\":\"dit-s/2\"}}", NULL, "invalid_value", "model.arch"},
    {BASE_EXAMPLE, "{\"model\":{\"arch\":\"DiT-S/16\"}}", NULL, "invalid_value", "model.arch"},
    {BASE_EXAMPLE, "{\"model\":{\"arch\":\"DiT-S/2 \"}}", NULL, "invalid_value", "model.arch"},
    /* model.depth */
    {BASE_PRETRAIN, "{\"model\":{\"depth\":\"12\"}}", NULL, "invalid_type", "model.depth"},
    {BASE_PRETRAIN, "{\"model\":{\"depth\":12.0}}", NULL, "invalid_type", "model.depth"},
    {BASE_PRETRAIN, "{\"model\":{\"depth\":0}}", NULL, "invalid_value", "model.depth"},
    {BASE_PRETRAIN, "{\"model\":{\"depth\":65}}", NULL, "invalid_value", "model.depth"},
    {BASE_PRETRAIN, NULL, "model.depth", "missing_field", "model.depth"},
    {BASE_PRETRAIN, "{\"model\":{\"arch\":\"DiT-S/2\",\"depth\":28,\"hidden_size\":384,"
     "\"num_heads\":6,\"patch_size\":2}}", NULL, "invalid_value",
     "model.depth"},
    {BASE_EXAMPLE, "{\"model\":{\"depth\":12}}", NULL, "invalid_value", "model.depth"},
    /* model.hidden_size */
    {BASE_PRETRAIN, "{\"model\":{\"hidden_size\":128.5}}", NULL, "invalid_type", "model.hidden_size"},
    {BASE_PRETRAIN, "{\"model\":{\"hidden_size\":4}}", NULL, "invalid_value", "model.hidden_size"},
    {BASE_PRETRAIN, "{\"model\":{\"hidden_size\":4100}}", NULL, "invalid_value", "model.hidden_size"},
    {BASE_PRETRAIN, "{\"model\":{\"hidden_size\":130,\"num_heads\":1}}", NULL, "invalid_value",
     "model.hidden_size"}, /* not a multiple of 4 */
    {BASE_PRETRAIN, NULL, "model.hidden_size", "missing_field", "model.hidden_size"},
    {BASE_PRETRAIN, "{\"model\":{\"arch\":\"DiT-B/2\",\"depth\":12,\"hidden_size\":384,"
     "\"num_heads\":12,\"patch_size\":2}}", NULL, "invalid_value",
     "model.hidden_size"},
    {BASE_EXAMPLE, "{\"model\":{\"hidden_size\":384}}", NULL, "invalid_value", "model.hidden_size"},
    /* model.num_heads */
    {BASE_PRETRAIN, "{\"model\":{\"num_heads\":true}}", NULL, "invalid_type", "model.num_heads"},
    {BASE_PRETRAIN, "{\"model\":{\"num_heads\":0}}", NULL, "invalid_value", "model.num_heads"},
    {BASE_PRETRAIN, "{\"model\":{\"num_heads\":65}}", NULL, "invalid_value", "model.num_heads"},
    {BASE_PRETRAIN, "{\"model\":{\"num_heads\":3}}", NULL, "invalid_value", "model.num_heads"},
    {BASE_PRETRAIN, "{\"model\":{\"hidden_size\":392,\"num_heads\":8}}", NULL, "invalid_value",
     "model.num_heads"}, /* head dimension 49 is odd */
    {BASE_PRETRAIN, NULL, "model.num_heads", "missing_field", "model.num_heads"},
    {BASE_EXAMPLE, "{\"model\":{\"num_heads\":6}}", NULL, "invalid_value", "model.num_heads"},
    /* model.patch_size */
    {BASE_PRETRAIN, "{\"model\":{\"patch_size\":\"2\"}}", NULL, "invalid_type", "model.patch_size"},
    {BASE_PRETRAIN, "{\"model\":{\"patch_size\":3}}", NULL, "invalid_value", "model.patch_size"},
    {BASE_PRETRAIN, "{\"model\":{\"patch_size\":16}}", NULL, "invalid_value", "model.patch_size"},
    {BASE_PRETRAIN, "{\"model\":{\"patch_size\":0}}", NULL, "invalid_value", "model.patch_size"},
    {BASE_PRETRAIN, NULL, "model.patch_size", "missing_field", "model.patch_size"},
    {BASE_PRETRAIN, "{\"model\":{\"arch\":\"DiT-XL/8\",\"depth\":28,\"hidden_size\":1152,"
     "\"num_heads\":16,\"patch_size\":2,\"image_size\":32}}", NULL, "invalid_value",
     "model.patch_size"},
    {BASE_EXAMPLE, "{\"model\":{\"patch_size\":2}}", NULL, "invalid_value", "model.patch_size"},
    /* model.image_size */
    {BASE_PRETRAIN, "{\"model\":{\"image_size\":28.0}}", NULL, "invalid_type", "model.image_size"},
    {BASE_PRETRAIN, "{\"model\":{\"image_size\":0}}", NULL, "invalid_value", "model.image_size"},
    {BASE_PRETRAIN, "{\"model\":{\"image_size\":2048}}", NULL, "invalid_value", "model.image_size"},
    {BASE_PRETRAIN, "{\"model\":{\"image_size\":29}}", NULL, "invalid_value", "model.image_size"},
    {BASE_PRETRAIN, "{\"model\":{\"patch_size\":8,\"image_size\":4}}", NULL, "invalid_value",
     "model.image_size"},
    {BASE_EXAMPLE, "{\"model\":{\"image_size\":\"32\"}}", NULL, "invalid_type", "model.image_size"},
    {BASE_EXAMPLE, "{\"model\":{\"image_size\":33}}", NULL, "invalid_value", "model.image_size"},
    {BASE_EXAMPLE, "{\"model\":{\"image_size\":1025}}", NULL, "invalid_value", "model.image_size"},
    /* model.channels */
    {BASE_EXAMPLE, "{\"model\":{\"channels\":3.5}}", NULL, "invalid_type", "model.channels"},
    {BASE_EXAMPLE, "{\"model\":{\"channels\":0}}", NULL, "invalid_value", "model.channels"},
    {BASE_EXAMPLE, "{\"model\":{\"channels\":17}}", NULL, "invalid_value", "model.channels"},
    /* model.learn_sigma: a boolean has no bad value, only bad types */
    {BASE_EXAMPLE, "{\"model\":{\"learn_sigma\":1}}", NULL, "invalid_type", "model.learn_sigma"},
    {BASE_EXAMPLE, "{\"model\":{\"learn_sigma\":\"true\"}}", NULL, "invalid_type",
     "model.learn_sigma"},
    {BASE_EXAMPLE, "{\"model\":{\"learn_sigma\":null}}", NULL, "invalid_type", "model.learn_sigma"},
    /* model.num_classes */
    {BASE_EXAMPLE, "{\"model\":{\"num_classes\":\"10\"}}", NULL, "invalid_type",
     "model.num_classes"},
    {BASE_EXAMPLE, "{\"model\":{\"num_classes\":10.0}}", NULL, "invalid_type", "model.num_classes"},
    {BASE_EXAMPLE, "{\"model\":{\"num_classes\":0}}", NULL, "invalid_value", "model.num_classes"},
    {BASE_EXAMPLE, "{\"model\":{\"num_classes\":-1}}", NULL, "invalid_value", "model.num_classes"},
    {BASE_EXAMPLE, "{\"model\":{\"num_classes\":1000001}}", NULL, "invalid_value",
     "model.num_classes"},
    /* hyperparameters.steps, strict integers */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":2.0}}", NULL, "invalid_type",
     "hyperparameters.steps"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":2.5}}", NULL, "invalid_type",
     "hyperparameters.steps"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":2e3}}", NULL, "invalid_type",
     "hyperparameters.steps"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":\"2000\"}}", NULL, "invalid_type",
     "hyperparameters.steps"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":0}}", NULL, "invalid_value",
     "hyperparameters.steps"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":-5}}", NULL, "invalid_value",
     "hyperparameters.steps"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"steps\":2147483648}}", NULL, "invalid_value",
     "hyperparameters.steps"},
    /* batch_size */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"batch_size\":32.0}}", NULL, "invalid_type",
     "hyperparameters.batch_size"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"batch_size\":0}}", NULL, "invalid_value",
     "hyperparameters.batch_size"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"batch_size\":4097}}", NULL, "invalid_value",
     "hyperparameters.batch_size"},
    /* learning_rate */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"learning_rate\":\"1e-4\"}}", NULL, "invalid_type",
     "hyperparameters.learning_rate"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"learning_rate\":true}}", NULL, "invalid_type",
     "hyperparameters.learning_rate"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"learning_rate\":0}}", NULL, "invalid_value",
     "hyperparameters.learning_rate"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"learning_rate\":-1e-4}}", NULL, "invalid_value",
     "hyperparameters.learning_rate"},
    /* weight_decay */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"weight_decay\":\"0\"}}", NULL, "invalid_type",
     "hyperparameters.weight_decay"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"weight_decay\":-0.1}}", NULL, "invalid_value",
     "hyperparameters.weight_decay"},
    /* ema_decay */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"ema_decay\":null}}", NULL, "invalid_type",
     "hyperparameters.ema_decay"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"ema_decay\":1}}", NULL, "invalid_value",
     "hyperparameters.ema_decay"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"ema_decay\":1.0}}", NULL, "invalid_value",
     "hyperparameters.ema_decay"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"ema_decay\":-0.1}}", NULL, "invalid_value",
     "hyperparameters.ema_decay"},
    /* class_dropout */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"class_dropout\":false}}", NULL, "invalid_type",
     "hyperparameters.class_dropout"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"class_dropout\":1.5}}", NULL, "invalid_value",
     "hyperparameters.class_dropout"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"class_dropout\":-0.01}}", NULL, "invalid_value",
     "hyperparameters.class_dropout"},
    /* grad_clip */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"grad_clip\":\"1\"}}", NULL, "invalid_type",
     "hyperparameters.grad_clip"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"grad_clip\":-1}}", NULL, "invalid_value",
     "hyperparameters.grad_clip"},
    /* grad_accum */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"grad_accum\":2.0}}", NULL, "invalid_type",
     "hyperparameters.grad_accum"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"grad_accum\":0}}", NULL, "invalid_value",
     "hyperparameters.grad_accum"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"grad_accum\":5}}", NULL, "invalid_value",
     "hyperparameters.grad_accum"}, /* does not divide 32 */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"grad_accum\":64}}", NULL, "invalid_value",
     "hyperparameters.grad_accum"},
    /* seed: integer 0..2^53 */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"seed\":1.0}}", NULL, "invalid_type",
     "hyperparameters.seed"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"seed\":\"0\"}}", NULL, "invalid_type",
     "hyperparameters.seed"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"seed\":-1}}", NULL, "invalid_value",
     "hyperparameters.seed"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"seed\":9007199254740993}}", NULL, "invalid_value",
     "hyperparameters.seed"},
    /* diff_tuning.power */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"power\":\"1\"}}", NULL, "invalid_type", "diff_tuning.power"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"power\":-0.5}}", NULL, "invalid_value", "diff_tuning.power"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"power\":4.5}}", NULL, "invalid_value", "diff_tuning.power"},
    /* replay_ratio */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"replay_ratio\":\"0.2\"}}", NULL, "invalid_type",
     "diff_tuning.replay_ratio"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"replay_ratio\":-0.1}}", NULL, "invalid_value",
     "diff_tuning.replay_ratio"},
    /* all of the batch replayed: no downstream samples left */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"replay_ratio\":1}}", NULL, "invalid_value",
     "diff_tuning.replay_ratio"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"batch_size\":1},\"diff_tuning\":{\"replay_ratio\":1.0}}",
     NULL, "invalid_value", "diff_tuning.replay_ratio"},
    /* replay_weight */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"replay_weight\":[]}}", NULL, "invalid_type",
     "diff_tuning.replay_weight"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"replay_weight\":-1}}", NULL, "invalid_value",
     "diff_tuning.replay_weight"},
    /* bank_size */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_size\":5000.0}}", NULL, "invalid_type",
     "diff_tuning.bank_size"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_size\":0}}", NULL, "invalid_value",
     "diff_tuning.bank_size"},
    /* precision */
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"precision\":16}}", NULL, "invalid_type",
     "hyperparameters.precision"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"precision\":\"fp16\"}}", NULL, "invalid_value",
     "hyperparameters.precision"},
    /* bank_sampler */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_sampler\":1}}", NULL, "invalid_type",
     "diff_tuning.bank_sampler"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_sampler\":\"euler\"}}", NULL, "invalid_value",
     "diff_tuning.bank_sampler"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_sampler\":\"DDPM\"}}", NULL, "invalid_value",
     "diff_tuning.bank_sampler"},
    /* bank_steps */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_steps\":250.5}}", NULL, "invalid_type",
     "diff_tuning.bank_steps"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_steps\":0}}", NULL, "invalid_value",
     "diff_tuning.bank_steps"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_steps\":1001}}", NULL, "invalid_value",
     "diff_tuning.bank_steps"},
    /* bank_cfg */
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_cfg\":\"1.5\"}}", NULL, "invalid_type",
     "diff_tuning.bank_cfg"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"bank_cfg\":0.5}}", NULL, "invalid_value",
     "diff_tuning.bank_cfg"},
    /* eval */
    {BASE_EXAMPLE, "{\"eval\":{\"sample_every\":500.0}}", NULL, "invalid_type", "eval.sample_every"},
    {BASE_EXAMPLE, "{\"eval\":{\"sample_every\":-1}}", NULL, "invalid_value", "eval.sample_every"},
    {BASE_EXAMPLE, "{\"eval\":{\"fid_every\":\"1000\"}}", NULL, "invalid_type", "eval.fid_every"},
    {BASE_EXAMPLE, "{\"eval\":{\"fid_every\":-1}}", NULL, "invalid_value", "eval.fid_every"},
    {BASE_EXAMPLE, "{\"eval\":{\"fid_samples\":1.5}}", NULL, "invalid_type", "eval.fid_samples"},
    {BASE_EXAMPLE, "{\"eval\":{\"fid_samples\":1}}", NULL, "invalid_value", "eval.fid_samples"},
    {BASE_EXAMPLE, "{\"eval\":{\"fid_samples\":0}}", NULL, "invalid_value", "eval.fid_samples"},
    {BASE_EXAMPLE, "{\"eval\":{\"extractor\":1}}", NULL, "invalid_type", "eval.extractor"},
    {BASE_EXAMPLE, "{\"eval\":{\"extractor\":\"clip\"}}", NULL, "invalid_value", "eval.extractor"},
    {BASE_EXAMPLE, "{\"eval\":{\"extractor\":\"classifier:\"}}", NULL, "invalid_value",
     "eval.extractor"},
    {BASE_EXAMPLE, "{\"eval\":{\"extractor\":\"Inception\"}}", NULL, "invalid_value",
     "eval.extractor"},
    {BASE_EXAMPLE, "{\"eval\":{\"sampler\":\"euler\"}}", NULL, "invalid_value", "eval.sampler"},
    {BASE_EXAMPLE, "{\"eval\":{\"sampler\":null}}", NULL, "invalid_type", "eval.sampler"},
    {BASE_EXAMPLE, "{\"eval\":{\"steps\":0}}", NULL, "invalid_value", "eval.steps"},
    {BASE_EXAMPLE, "{\"eval\":{\"steps\":1001}}", NULL, "invalid_value", "eval.steps"},
    {BASE_EXAMPLE, "{\"eval\":{\"steps\":50.0}}", NULL, "invalid_type", "eval.steps"},
    {BASE_EXAMPLE, "{\"eval\":{\"cfg\":0.99}}", NULL, "invalid_value", "eval.cfg"},
    {BASE_EXAMPLE, "{\"eval\":{\"cfg\":\"1.5\"}}", NULL, "invalid_type", "eval.cfg"},
    /* forgetting_curve and the forgetting object */
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\"}", NULL, "missing_field",
     "forgetting.checkpoint"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"forgetting\":{\"checkpoint\":\"\"}}", NULL,
     "missing_field", "forgetting.checkpoint"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"forgetting\":{\"checkpoint\":null}}", NULL,
     "missing_field", "forgetting.checkpoint"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"forgetting\":{\"checkpoint\":\"job_1\"}}",
     "base_model", "missing_field", "base_model"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"forgetting\":{\"checkpoint\":\"job_1\"}}",
     "dataset", "missing_field", "dataset"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"model\":{\"depth\":2},\"forgetting\":"
     "{\"checkpoint\":\"job_1\"}}", NULL, "invalid_value", "model.depth"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"checkpoint\":5}}", NULL, "invalid_type",
     "forgetting.checkpoint"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"checkpoint\":[\"job_1\"]}}", NULL, "invalid_type",
     "forgetting.checkpoint"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"buckets\":0}}", NULL, "invalid_value", "forgetting.buckets"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"buckets\":101}}", NULL, "invalid_value",
     "forgetting.buckets"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"buckets\":10.0}}", NULL, "invalid_type",
     "forgetting.buckets"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"loss_images\":0}}", NULL, "invalid_value",
     "forgetting.loss_images"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"loss_images\":\"256\"}}", NULL, "invalid_type",
     "forgetting.loss_images"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"switch_points\":1}}", NULL, "invalid_value",
     "forgetting.switch_points"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"switch_points\":-1}}", NULL, "invalid_value",
     "forgetting.switch_points"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"switch_points\":1002}}", NULL, "invalid_value",
     "forgetting.switch_points"},
    {BASE_EXAMPLE, "{\"method\":\"forgetting_curve\",\"forgetting\":{\"checkpoint\":\"job_1\","
     "\"switch_points\":1}}", NULL, "invalid_value", "forgetting.switch_points"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"samples\":1}}", NULL, "invalid_value", "forgetting.samples"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"samples\":true}}", NULL, "invalid_type",
     "forgetting.samples"},
    /* checkpoint */
    {BASE_EXAMPLE, "{\"checkpoint\":{\"every\":1000.0}}", NULL, "invalid_type", "checkpoint.every"},
    {BASE_EXAMPLE, "{\"checkpoint\":{\"every\":0}}", NULL, "invalid_value", "checkpoint.every"},
    {BASE_EXAMPLE, "{\"checkpoint\":{\"keep\":\"3\"}}", NULL, "invalid_type", "checkpoint.keep"},
    {BASE_EXAMPLE, "{\"checkpoint\":{\"keep\":0}}", NULL, "invalid_value", "checkpoint.keep"},
    /* unknown fields, at the top and in every section */
    {BASE_EXAMPLE, "{\"foo\":1}", NULL, "unknown_field", "foo"},
    {BASE_EXAMPLE, "{\"Dataset\":\"ds_1\"}", NULL, "unknown_field", "Dataset"},
    {BASE_EXAMPLE, "{\"hyperparameters\":{\"lr\":1e-4}}", NULL, "unknown_field",
     "hyperparameters.lr"},
    {BASE_EXAMPLE, "{\"model\":{\"arc\":\"DiT-S/2\"}}", NULL, "unknown_field", "model.arc"},
    {BASE_EXAMPLE, "{\"diff_tuning\":{\"ratio\":0.2}}", NULL, "unknown_field", "diff_tuning.ratio"},
    {BASE_EXAMPLE, "{\"eval\":{\"fid\":true}}", NULL, "unknown_field", "eval.fid"},
    {BASE_EXAMPLE, "{\"forgetting\":{\"job\":\"job_1\"}}", NULL, "unknown_field", "forgetting.job"},
    {BASE_EXAMPLE, "{\"checkpoint\":{\"keep_last\":3}}", NULL, "unknown_field",
     "checkpoint.keep_last"},
    {BASE_PRETRAIN, "{\"model\":{\"mlp_ratio\":4}}", NULL, "unknown_field", "model.mlp_ratio"},
    /* webhook */
    {BASE_EXAMPLE, "{\"webhook\":\"http://h/\"}", NULL, "invalid_type", "webhook"},
    {BASE_EXAMPLE, "{\"webhook\":[]}", NULL, "invalid_type", "webhook"},
    {BASE_EXAMPLE, "{\"webhook\":{}}", NULL, "missing_field", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"events\":[\"status\"]}}", NULL, "missing_field", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"secret\":\"s\"}}", NULL, "unknown_field",
     "webhook.secret"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":null}}", NULL, "invalid_type", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":5}}", NULL, "invalid_type", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"ftp://h/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"file:///etc/passwd\"}}", NULL, "invalid_value",
     "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"hooks.example.com/x\"}}", NULL, "invalid_value",
     "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http:///x\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://user:pw@h/\"}}", NULL, "invalid_value",
     "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h /x\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\\n\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h\\u00e9/\"}}", NULL, "invalid_value",
     "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h:0/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h:65536/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h:/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h:8x/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://[::1/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://[]/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://[::1]x/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h,i/\"}}", NULL, "invalid_value", "webhook.url"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"events\":\"status\"}}", NULL,
     "invalid_type", "webhook.events"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"events\":null}}", NULL, "invalid_type",
     "webhook.events"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"events\":[]}}", NULL, "invalid_value",
     "webhook.events"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"events\":[\"status\",1]}}", NULL,
     "invalid_type", "webhook.events"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"events\":[\"status\",\"done\"]}}", NULL,
     "invalid_value", "webhook.events"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"http://h/\",\"events\":[\"Status\"]}}", NULL,
     "invalid_value", "webhook.events"},
    /* unknown keys are reported before a bad url, and a bad url before bad events */
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"ftp://h/\",\"event\":[\"log\"]}}", NULL,
     "unknown_field", "webhook.event"},
    {BASE_EXAMPLE, "{\"webhook\":{\"url\":\"ftp://h/\",\"events\":[]}}", NULL, "invalid_value",
     "webhook.url"},
};

static json_t *base_doc(int base)
{
    const char *text = base == BASE_PRETRAIN ? PRETRAIN : EXAMPLE;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root) {
        fprintf(stderr, "base document: %s\n", jerr.text);
        exit(2);
    }
    return root;
}

/* Applies a case to its base document and returns the request as text (caller frees). */
static char *bad_case_text(const bad_case *c)
{
    json_t *root = base_doc(c->base);
    if (c->patch) {
        json_error_t jerr;
        json_t *patch = json_loads(c->patch, JSON_REJECT_DUPLICATES, &jerr);
        if (!patch || json_object_update_recursive(root, patch) != 0) {
            fprintf(stderr, "bad patch %s: %s\n", c->patch, jerr.text);
            exit(2);
        }
        json_decref(patch);
    }
    if (c->del) {
        const char *dot = strchr(c->del, '.');
        json_t *obj = root;
        if (dot) {
            char section[64];
            snprintf(section, sizeof section, "%.*s", (int)(dot - c->del), c->del);
            obj = json_object_get(root, section);
        }
        if (!obj || json_object_del(obj, dot ? dot + 1 : c->del) != 0) {
            fprintf(stderr, "cannot delete %s\n", c->del);
            exit(2);
        }
    }
    char *text = json_dumps(root, JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

static void check_error(const char *label, int rc, const dt_spec_error *e, const char *code,
                        const char *param)
{
    CHECK(rc == -1, "%s: accepted, expected %s at \"%s\"", label, code, param);
    if (rc != -1)
        return;
    CHECK(!strcmp(e->code, code) && !strcmp(e->param, param),
          "%s: got %s at \"%s\" (%s), expected %s at \"%s\"", label, e->code, e->param, e->message,
          code, param);
    CHECK(e->message[0] != 0, "%s: empty message", label);
    /* messages name the field they are about */
    if (param[0])
        CHECK(strstr(e->message, param) != NULL, "%s: message \"%s\" does not name %s", label,
              e->message, param);
}

static void test_bad_fields(void)
{
    /* both bases are valid, so every failure below is the case's own doing */
    dt_spec s;
    dt_spec_error e;
    CHECK(parse_str(&s, PRETRAIN, &e) == 0, "pretrain base: %s", e.message);
    CHECK(parse_str(&s, EXAMPLE, &e) == 0, "example base: %s", e.message);

    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        char *text = bad_case_text(c);
        char label[600];
        snprintf(label, sizeof label, "bad_cases[%zu] %s%s%s", i, c->patch ? c->patch : "",
                 c->del ? " without " : "", c->del ? c->del : "");
        int rc = parse_str(&s, text, &e);
        check_error(label, rc, &e, c->code, c->param);

        /* spec_from_json reports the same */
        json_t *root = json_loads(text, 0, NULL);
        dt_spec_error e2;
        rc = spec_from_json(&s, root, &e2);
        CHECK(rc == -1 && !strcmp(e.code, e2.code) && !strcmp(e.param, e2.param) &&
              !strcmp(e.message, e2.message), "%s: spec_from_json differs", label);
        json_decref(root);
        free(text);
    }
}

/* Strings at and past their buffers (DT_SPEC_STR - 1 bytes fit). */
static void test_long_strings(void)
{
    static const char *const keys[] = {"base_model", "dataset", "vae"};
    for (int k = 0; k < 3; k++) {
        for (int len = DT_SPEC_STR - 1; len <= DT_SPEC_STR; len++) {
            char *str = malloc((size_t)len + 1);
            memset(str, 'a', (size_t)len);
            str[len] = 0;
            json_t *root = base_doc(BASE_EXAMPLE);
            json_object_set_new(root, keys[k], json_string(str));
            dt_spec s;
            dt_spec_error e;
            int rc = spec_from_json(&s, root, &e);
            char label[64];
            snprintf(label, sizeof label, "%s of %d bytes", keys[k], len);
            if (len < DT_SPEC_STR)
                CHECK(rc == 0 && strlen(k == 2 ? s.vae : k ? s.dataset : s.base_model) ==
                                     (size_t)len, "%s: %s", label, e.message);
            else
                check_error(label, rc, &e, "invalid_value", keys[k]);
            json_decref(root);
            free(str);
        }
    }
    /* forgetting.checkpoint has the same bound */
    for (int len = DT_SPEC_STR - 1; len <= DT_SPEC_STR; len++) {
        char *str = malloc((size_t)len + 1);
        memset(str, 'j', (size_t)len);
        str[len] = 0;
        json_t *root = base_doc(BASE_EXAMPLE);
        json_object_set_new(root, "forgetting", json_pack("{s:s}", "checkpoint", str));
        dt_spec s;
        dt_spec_error e;
        int rc = spec_from_json(&s, root, &e);
        char label[64];
        snprintf(label, sizeof label, "forgetting.checkpoint of %d bytes", len);
        if (len < DT_SPEC_STR)
            CHECK(rc == 0 && strlen(s.forgetting.checkpoint) == (size_t)len, "%s: %s", label,
                  e.message);
        else
            check_error(label, rc, &e, "invalid_value", "forgetting.checkpoint");
        json_decref(root);
        free(str);
    }
    /* a NUL inside a string cannot be stored; jansson only builds one programmatically */
    json_t *root = base_doc(BASE_EXAMPLE);
    json_object_set_new(root, "dataset", json_stringn("ds\0x", 4));
    dt_spec s;
    dt_spec_error e;
    check_error("dataset with NUL", spec_from_json(&s, root, &e), &e, "invalid_value", "dataset");
    json_object_set_new(root, "dataset", json_string("ds"));
    json_object_set_new(root, "method", json_stringn("full\0", 5));
    check_error("method with NUL", spec_from_json(&s, root, &e), &e, "invalid_value", "method");
    json_decref(root);

    /* An unknown key too long for the error's param (or message) is cut at a character, never
     * inside one: the API sends both as JSON strings (found by fuzz/fuzz_request.c). */
    static const int pads[] = {118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
                               232, 233, 234, 235, 236, 237, 238, 239, 240, 241};
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        char key[300];
        memset(key, 'k', (size_t)pads[i]);
        strcpy(key + pads[i], "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"); /* U+00E9 U+20AC U+1F600 */
        root = base_doc(BASE_EXAMPLE);
        json_object_set_new(root, key, json_integer(1));
        int rc = spec_from_json(&s, root, &e);
        json_t *param = json_string(e.param), *msg = json_string(e.message);
        CHECK(rc == -1 && !strcmp(e.code, "unknown_field") && strlen(e.param) >= 118,
              "unknown key of %d + 9 bytes: %s '%s'", pads[i], e.code, e.param);
        CHECK(param && msg, "unknown key of %d + 9 bytes: param or message is not UTF-8: '%s' '%s'",
              pads[i], e.param, e.message);
        json_decref(param);
        json_decref(msg);
        json_decref(root);
    }
}

static void test_malformed(void)
{
    static const char *const bad_json[] = {
        "", "{", "{\"dataset\":}", "{\"dataset\":\"d\",}", "{'dataset':'d'}",
        "{\"dataset\":\"d\"} x", "{\"dataset\":\"d\",\"dataset\":\"e\"}", /* duplicate key */
        "{\"hyperparameters\":{\"steps\":99999999999999999999}}",         /* overflow */
        "{\"hyperparameters\":{\"learning_rate\":NaN}}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        dt_spec s;
        dt_spec_error e;
        int rc = parse_str(&s, bad_json[i], &e);
        char label[128];
        snprintf(label, sizeof label, "malformed[%zu] '%s'", i, bad_json[i]);
        check_error(label, rc, &e, "invalid_json", "");
        CHECK(strstr(e.message, "line") && strstr(e.message, "column"),
              "%s: message without position: %s", label, e.message);
    }
    /* the length is honoured: a valid document cut short is malformed */
    dt_spec s;
    dt_spec_error e;
    check_error("truncated", spec_parse(&s, EXAMPLE, strlen(EXAMPLE) / 2, &e), &e,
                "invalid_json", "");

    static const char *const not_object[] = {"[]", "42", "\"job\"", "null", "true", "[{}]"};
    for (size_t i = 0; i < sizeof not_object / sizeof not_object[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "root %s", not_object[i]);
        check_error(label, parse_str(&s, not_object[i], &e), &e, "invalid_type", "");
    }
    check_error("NULL root", spec_from_json(&s, NULL, &e), &e, "invalid_type", "");
}

/* ---- canonical JSON and round trip ----------------------------------------------------------- */

static void check_keys(json_t *obj, const char *const *keys, const char *what)
{
    const char *key;
    json_t *v;
    int i = 0;
    json_object_foreach(obj, key, v) {
        (void)v;
        CHECK(keys[i] && !strcmp(key, keys[i]), "%s: key %d is %s, expected %s", what, i, key,
              keys[i] ? keys[i] : "(end)");
        if (!keys[i])
            return;
        i++;
    }
    CHECK(keys[i] == NULL, "%s: missing key %s", what, keys[i]);
}

static void test_canonical(void)
{
    dt_spec s;
    dt_spec_error e;
    CHECK(parse_str(&s, PRETRAIN, &e) == 0, "pretrain: %s", e.message);
    json_t *j = spec_to_json(&s);
    CHECK(j != NULL, "spec_to_json");
    if (!j)
        return;
    static const char *const top[] = {"base_model", "vae", "dataset", "method", "peft",
                                      "peft_options", "model", "hyperparameters", "diff_tuning",
                                      "forgetting", "eval", "checkpoint", "device", "priority",
                                      "webhook", NULL};
    static const char *const po[] = {"difffit_blocks", "rank", "alpha", "targets", NULL};
    static const char *const model[] = {"arch", "depth", "hidden_size", "num_heads", "patch_size",
                                        "image_size", "channels", "learn_sigma", "num_classes",
                                        NULL};
    static const char *const hp[] = {"steps", "batch_size", "learning_rate", "weight_decay",
                                     "ema_decay", "class_dropout", "grad_clip", "grad_accum",
                                     "seed", "precision", NULL};
    static const char *const dt[] = {"power", "replay_ratio", "replay_weight", "bank_size",
                                     "bank_sampler", "bank_steps", "bank_cfg", NULL};
    static const char *const ev[] = {"sample_every", "fid_every", "fid_samples", "extractor",
                                     "sampler", "steps", "cfg", NULL};
    static const char *const fg[] = {"checkpoint", "buckets", "loss_images", "switch_points",
                                     "samples", NULL};
    static const char *const ck[] = {"every", "keep", NULL};
    check_keys(j, top, "top");
    check_keys(json_object_get(j, "model"), model, "model");
    check_keys(json_object_get(j, "peft_options"), po, "peft_options");
    check_keys(json_object_get(j, "hyperparameters"), hp, "hyperparameters");
    check_keys(json_object_get(j, "diff_tuning"), dt, "diff_tuning");
    check_keys(json_object_get(j, "forgetting"), fg, "forgetting");
    CHECK(json_is_null(json_object_get(json_object_get(j, "forgetting"), "checkpoint")),
          "unset forgetting.checkpoint printed as null");
    check_keys(json_object_get(j, "eval"), ev, "eval");
    check_keys(json_object_get(j, "checkpoint"), ck, "checkpoint");
    CHECK(json_is_null(json_object_get(j, "base_model")), "empty base_model printed as null");
    CHECK(json_is_null(json_object_get(j, "vae")), "no vae printed as null");
    CHECK(json_is_null(json_object_get(j, "peft")), "no peft printed as null");
    char *po_text = json_dumps(json_object_get(j, "peft_options"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK(po_text && !strcmp(po_text, "{\"difffit_blocks\":null,\"rank\":8,\"alpha\":8.0,"
                                      "\"targets\":[\"qkv\",\"proj\",\"fc1\",\"fc2\"]}"),
          "default peft_options: %s", po_text ? po_text : "(null)");
    free(po_text);
    CHECK(json_is_null(json_object_get(j, "webhook")), "no webhook printed as null");
    CHECK(json_is_null(json_object_get(json_object_get(j, "model"), "num_classes")),
          "num_classes 0 printed as null");
    CHECK(!strcmp(json_string_value(json_object_get(j, "method")), "pretrain"), "method name");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "model"), "depth")) == 4,
          "custom depth printed");
    CHECK(json_is_real(json_object_get(json_object_get(j, "hyperparameters"), "weight_decay")),
          "numbers printed as reals");
    CHECK(json_is_true(json_object_get(json_object_get(j, "model"), "learn_sigma")),
          "bools printed as bools");
    json_decref(j);

    /* fine-tuning: the sizes come from the base model and are not printed */
    CHECK(parse_str(&s, EXAMPLE, &e) == 0, "example: %s", e.message);
    j = spec_to_json(&s);
    static const char *const model_ft[] = {"arch", "image_size", "channels", "learn_sigma",
                                           "num_classes", NULL};
    check_keys(json_object_get(j, "model"), model_ft, "model (diff_tuning)");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "model"), "num_classes")) == 10,
          "num_classes printed");
    CHECK(!strcmp(json_string_value(json_object_get(j, "base_model")), "mdl_..."), "base_model");
    json_decref(j);
}

/* spec -> JSON text -> spec must reproduce the spec, and print the same text again. */
static void check_round_trip(const dt_spec *s, const char *what)
{
    json_t *j = spec_to_json(s);
    CHECK(j != NULL, "%s: spec_to_json", what);
    if (!j)
        return;
    char *text = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(j);
    dt_spec back;
    dt_spec_error e;
    int rc = parse_str(&back, text, &e);
    CHECK(rc == 0, "%s: canonical JSON rejected: %s %s: %s\n%s", what, e.code, e.param, e.message,
          text);
    if (rc == 0) {
        check_spec_equal(s, &back, what);
        json_t *j2 = spec_to_json(&back);
        char *text2 = json_dumps(j2, JSON_PRESERVE_ORDER | JSON_COMPACT);
        CHECK(!strcmp(text, text2), "%s: printed differently the second time", what);
        free(text2);
        json_decref(j2);
    }
    free(text);
}

static void test_round_trip(void)
{
    static const char *const docs[] = {
        EXAMPLE,
        PRETRAIN,
        "{\"base_model\":\"m\",\"dataset\":\"d\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"full\",\"model\":{\"arch\":\"custom\"}}",
        "{\"dataset\":\"d\",\"method\":\"pretrain\",\"model\":{\"arch\":\"DiT-XL/4\",\"image_size\":64}}",
        "{\"base_model\":\"ü/ñ \\\"q\\\"\",\"dataset\":\"d\\\\e\",\"hyperparameters\":{"
        "\"learning_rate\":3.0000000000000004e-5,\"weight_decay\":0.30000000000000004,"
        "\"ema_decay\":0.99999999999999989,\"grad_clip\":1e300,\"seed\":9007199254740992,"
        "\"batch_size\":96,\"grad_accum\":12},\"diff_tuning\":{\"replay_ratio\":0.1234567890123,"
        "\"power\":1.5,\"bank_sampler\":\"ddim\"},\"device\":\"cuda:7\",\"priority\":-3}",
        "{\"method\":\"forgetting_curve\",\"base_model\":\"mdl_1\",\"dataset\":\"ds_1\","
        "\"forgetting\":{\"checkpoint\":\"job_1\",\"buckets\":4,\"loss_images\":8,"
        "\"switch_points\":0,\"samples\":6},\"eval\":{\"extractor\":\"classifier:mdl_2\","
        "\"steps\":4}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":\"https://h.example/x?y=1\","
        "\"events\":[\"error\",\"checkpoint\",\"status\"]}}",
        "{\"base_model\":\"mdl_1\",\"vae\":\"mdl_2\",\"dataset\":\"d\"}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\",\"peft_options\":{\"rank\":4,"
        "\"targets\":[\"fc2\",\"qkv\"]}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"full\",\"peft\":\"lora\","
        "\"peft_options\":{\"rank\":16,\"alpha\":0.30000000000000004}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\",\"peft_options\":"
        "{\"difffit_blocks\":14},\"hyperparameters\":{\"learning_rate\":2e-4}}",
        "{\"base_model\":\"m\",\"dataset\":\"d\",\"method\":\"full\",\"peft\":\"bitfit\"}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        dt_spec s;
        dt_spec_error e;
        char what[32];
        snprintf(what, sizeof what, "round trip %zu", i);
        int rc = parse_str(&s, docs[i], &e);
        CHECK(rc == 0, "%s: %s %s: %s", what, e.code, e.param, e.message);
        if (rc == 0)
            check_round_trip(&s, what);
    }
}

/* peft and peft_options: what they store, the defaults they resolve, the learning-rate default a
 * peft brings, and their canonical form. */
static void test_peft(void)
{
    dt_spec s;
    dt_spec_error e;

    /* a peft without a learning rate trains at the DiffFit rate; an explicit one is kept */
    int rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\"}", &e);
    CHECK(rc == 0 && s.peft.kind == DT_PEFT_LORA, "lora: %s", e.message);
    CHECK(s.hp.learning_rate == DT_PEFT_DIFFFIT_DEFAULT_LR && DT_PEFT_DIFFFIT_DEFAULT_LR == 1e-3,
          "peft default learning rate %g", s.hp.learning_rate);
    CHECK(s.peft.rank == 8 && s.peft.alpha == 8 && s.peft.targets == DT_LORA_ALL &&
          s.peft.difffit_blocks == 0, "lora defaults");
    /* the explicit rate wins whatever the key order of the request */
    rc = parse_str(&s, "{\"hyperparameters\":{\"learning_rate\":3e-4},\"peft\":\"difffit\","
                       "\"base_model\":\"m\",\"dataset\":\"d\"}", &e);
    CHECK(rc == 0 && s.peft.kind == DT_PEFT_DIFFFIT && s.hp.learning_rate == 3e-4,
          "explicit learning rate kept with a peft: %g %s", s.hp.learning_rate, e.message);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"bitfit\","
                       "\"hyperparameters\":{\"learning_rate\":1e-4}}", &e);
    CHECK(rc == 0 && s.peft.kind == DT_PEFT_BITFIT && s.hp.learning_rate == 1e-4,
          "explicit 1e-4 kept with bitfit: %g", s.hp.learning_rate);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":null,"
                       "\"hyperparameters\":{\"steps\":5}}", &e);
    CHECK(rc == 0 && s.peft.kind == DT_PEFT_NONE && s.hp.learning_rate == 1e-4,
          "no peft: the usual default %g", s.hp.learning_rate);

    /* alpha: absent or null is the rank, whatever the rank; given, it is kept */
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\","
                       "\"peft_options\":{\"rank\":4}}", &e);
    CHECK(rc == 0 && s.peft.rank == 4 && s.peft.alpha == 4, "alpha defaults to rank 4: %g",
          s.peft.alpha);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\","
                       "\"peft_options\":{\"alpha\":null,\"rank\":32}}", &e);
    CHECK(rc == 0 && s.peft.rank == 32 && s.peft.alpha == 32, "null alpha is rank 32: %g",
          s.peft.alpha);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\","
                       "\"peft_options\":{\"rank\":4,\"alpha\":16,\"targets\":[\"fc2\",\"qkv\"]}}", &e);
    CHECK(rc == 0 && s.peft.rank == 4 && s.peft.alpha == 16 &&
          s.peft.targets == (DT_LORA_QKV | DT_LORA_FC2), "rank 4, alpha 16, qkv+fc2: %s",
          e.message);
    json_t *j = spec_to_json(&s);
    char *text = json_dumps(json_object_get(j, "peft_options"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK(text && !strcmp(text, "{\"difffit_blocks\":null,\"rank\":4,\"alpha\":16.0,"
                                "\"targets\":[\"qkv\",\"fc2\"]}"),
          "canonical peft_options (targets in block order): %s", text ? text : "(null)");
    CHECK(!strcmp(json_string_value(json_object_get(j, "peft")), "lora"), "peft printed");
    free(text);
    json_decref(j);
    for (int t = 0; t < 4; t++) {
        static const char *const names[] = {"qkv", "proj", "fc1", "fc2"};
        char doc[200];
        snprintf(doc, sizeof doc, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"lora\","
                 "\"peft_options\":{\"targets\":[\"%s\"]}}", names[t]);
        rc = parse_str(&s, doc, &e);
        CHECK(rc == 0 && s.peft.targets == (1u << t), "target %s is bit %d (%#x)", names[t], t,
              s.peft.targets);
    }
    CHECK(DT_LORA_QKV == 1 && DT_LORA_PROJ == 2 && DT_LORA_FC1 == 4 && DT_LORA_FC2 == 8,
          "target bits in block order");

    /* difffit_blocks: null is auto (0), printed as null; a number is kept */
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\","
                       "\"method\":\"full\",\"peft_options\":{\"difffit_blocks\":14}}", &e);
    CHECK(rc == 0 && s.peft.kind == DT_PEFT_DIFFFIT && s.method == DT_METHOD_FULL &&
          s.peft.difffit_blocks == 14, "difffit_blocks 14: %s", e.message);
    j = spec_to_json(&s);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "peft_options"),
                                             "difffit_blocks")) == 14, "difffit_blocks printed");
    json_decref(j);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"peft\":\"difffit\","
                       "\"peft_options\":{\"difffit_blocks\":null}}", &e);
    CHECK(rc == 0 && s.peft.difffit_blocks == 0, "difffit_blocks null is auto");

    /* the peft's messages name the method that refused it */
    rc = parse_str(&s, "{\"dataset\":\"d\",\"method\":\"pretrain\",\"peft\":\"lora\"}", &e);
    check_error("pretrain with lora", rc, &e, "invalid_value", "peft");
    CHECK(strstr(e.message, "pretrain") && strstr(e.message, "full"), "message: %s", e.message);
}

/* The webhook object: what it stores, its defaults, its canonical form and its length bound. */
static void test_webhook(void)
{
    dt_spec s;
    dt_spec_error e;
    CHECK(parse_str(&s, EXAMPLE, &e) == 0 && s.webhook.url[0] == 0 && s.webhook.events == 0,
          "no webhook by default");
    int rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":"
                           "\"http://127.0.0.1:9/hook\"}}", &e);
    CHECK(rc == 0 && !strcmp(s.webhook.url, "http://127.0.0.1:9/hook") &&
          s.webhook.events == DT_SPEC_WEBHOOK_STATUS, "events default to status: %s", e.message);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":\"http://h\","
                       "\"events\":[\"error\",\"checkpoint\",\"status\",\"checkpoint\"]}}", &e);
    CHECK(rc == 0, "events: %s", e.message);
    CHECK(s.webhook.events == (spec_webhook_event_bit("status") | spec_webhook_event_bit("checkpoint") |
                               spec_webhook_event_bit("error")), "events bits %#x", s.webhook.events);
    json_t *j = spec_to_json(&s);
    char *text = json_dumps(json_object_get(j, "webhook"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK(text && !strcmp(text, "{\"url\":\"http://h\",\"events\":[\"status\",\"checkpoint\",\"error\"]}"),
          "canonical webhook: %s", text ? text : "(null)");
    free(text);
    json_decref(j);

    /* every SSE type has a bit of its own; nothing else has one */
    unsigned all = 0;
    for (int i = 0; spec_webhook_event_names[i]; i++) {
        unsigned bit = spec_webhook_event_bit(spec_webhook_event_names[i]);
        CHECK(bit && !(all & bit), "bit of %s", spec_webhook_event_names[i]);
        all |= bit;
    }
    CHECK(all == 0x7f, "seven event types (%#x)", all);
    CHECK(!spec_webhook_event_bit("heartbeat") && !spec_webhook_event_bit("") &&
          !spec_webhook_event_bit(NULL), "unknown types have no bit");

    /* credentials are refused by name (they would show in GET /jobs/{id}); '@' in the path is fine */
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":"
                       "\"https://user:pw@h.example/x\"}}", &e);
    check_error("credentials in webhook.url", rc, &e, "invalid_value", "webhook.url");
    CHECK(strstr(e.message, "password") != NULL, "the message says why: %s", e.message);
    rc = parse_str(&s, "{\"base_model\":\"m\",\"dataset\":\"d\",\"webhook\":{\"url\":"
                       "\"https://h.example/a@b?c=d@e\"}}", &e);
    CHECK(rc == 0, "'@' after the host: %s", e.message);

    /* the URL may be DT_SPEC_WEBHOOK_URL_MAX bytes, not one more */
    for (int len = DT_SPEC_WEBHOOK_URL_MAX; len <= DT_SPEC_WEBHOOK_URL_MAX + 1; len++) {
        char *url = malloc((size_t)len + 1);
        memcpy(url, "http://h/", 9);
        memset(url + 9, 'p', (size_t)len - 9);
        url[len] = 0;
        json_t *root = base_doc(BASE_EXAMPLE);
        json_object_set_new(root, "webhook", json_pack("{s:s}", "url", url));
        rc = spec_from_json(&s, root, &e);
        char label[64];
        snprintf(label, sizeof label, "webhook.url of %d bytes", len);
        if (len <= DT_SPEC_WEBHOOK_URL_MAX)
            CHECK(rc == 0 && strlen(s.webhook.url) == (size_t)len, "%s: %s", label, e.message);
        else
            check_error(label, rc, &e, "invalid_value", "webhook.url");
        json_decref(root);
        free(url);
    }
}

int main(void)
{
    test_defaults();
    test_example();
    test_accepted();
    test_bad_fields();
    test_long_strings();
    test_malformed();
    test_canonical();
    test_round_trip();
    test_webhook();
    test_peft();
    return check_done("test_spec");
}
