/* spec.h — the job specification (DESIGN.md section 3), parsed and validated.
 *
 * The same JSON document is the body of POST /jobs and the --spec file of `difftune train`
 * (where base_model and dataset are paths). Every field is checked before any work starts; a bad
 * one is reported with a machine-readable code, a message and the JSON path of the field.
 */
#ifndef DT_SPEC_H
#define DT_SPEC_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* forgetting_curve is an analysis, not training: it measures a fine-tuned checkpoint against its
 * base model on held-out data (engine/forgetting.h) and writes no checkpoint. */
typedef enum {
    DT_METHOD_PRETRAIN = 0,
    DT_METHOD_FULL,
    DT_METHOD_DIFF_TUNING,
    DT_METHOD_FORGETTING_CURVE
} dt_method;

#define DT_SPEC_STR 1024
#define DT_SPEC_FORGETTING_BUCKETS_MAX 100 /* FORGETTING_MAX_BUCKETS (engine/forgetting.h) */
#define DT_SPEC_SWITCH_POINTS_MAX 1001
#define DT_SPEC_WEBHOOK_URL_MAX 2048 /* bytes of webhook.url */
#define DT_SPEC_WEBHOOK_STATUS 1u    /* the bit of "status", the default webhook filter */

/* Parameter-efficient fine-tuning (engine/peft.h), with method full or diff_tuning. */
typedef enum {
    DT_PEFT_NONE = 0, /* every parameter trains */
    DT_PEFT_DIFFFIT,  /* gammas on the first blocks, biases, label table */
    DT_PEFT_BITFIT,   /* biases and label table */
    DT_PEFT_LORA      /* low-rank A, B beside the target linears; base frozen */
} dt_peft_kind;

/* LoRA targets (bits of dt_peft_config.targets), in block order. */
#define DT_LORA_QKV 1u
#define DT_LORA_PROJ 2u
#define DT_LORA_FC1 4u
#define DT_LORA_FC2 8u
#define DT_LORA_ALL 15u
#define DT_LORA_RANK_MAX 256
#define DT_PEFT_DIFFFIT_DEFAULT_LR 1e-3 /* hyperparameters.learning_rate default with a peft */

typedef struct {
    dt_peft_kind kind;   /* "peft": null | "difffit" | "bitfit" | "lora" */
    /* "peft_options" */
    int difffit_blocks;  /* blocks (from the first) with gammas; 0 = half the depth, rounded up
                          * (14 for DiT-XL/2's 28); at most the depth (checked against the base) */
    int rank;            /* LoRA rank r, default 8, 1..DT_LORA_RANK_MAX */
    double alpha;        /* LoRA alpha, > 0; null or absent = rank, so alpha/r = 1 (resolved
                          * by the parser; 0 in a config built by hand means the rank too) */
    unsigned targets;    /* LoRA targets, default DT_LORA_ALL; JSON a non-empty array of
                          * "qkv" | "proj" | "fc1" | "fc2" without repeats */
} dt_peft_config;

typedef struct {
    char base_model[DT_SPEC_STR]; /* path or id; empty only for pretrain */
    char vae[DT_SPEC_STR];        /* path or id (kind "vae") of the SD VAE of a latent DiT; "" =
                                   * pixel space. With a VAE the DiT works on its latents: the
                                   * dataset is encoded at (DiT input size x the VAE's 8) pixels
                                   * and samples are decoded (engine/latents.h) */
    char dataset[DT_SPEC_STR];    /* path or id (forgetting_curve: the held-out target data) */
    dt_method method;
    dt_peft_config peft;          /* "peft" and "peft_options"; a peft needs method full or
                                   * diff_tuning; without "learning_rate" a peft job gets
                                   * DT_PEFT_DIFFFIT_DEFAULT_LR (the reference's DiffFit rate) */

    struct {
        char arch[32];            /* "DiT-S/2" ... "DiT-XL/8", or "custom" */
        int depth, hidden_size, num_heads, patch_size; /* required for custom, else from arch */
        int image_size;           /* default 32 */
        int channels;             /* default 3 */
        int learn_sigma;          /* default 1 */
        int num_classes;          /* 0 = the dataset's class count */
    } model;

    struct {
        int steps;                /* default 2000, >= 1 */
        int batch_size;           /* default 32, 1..4096 */
        double learning_rate;     /* default 1e-4, > 0 */
        double weight_decay;      /* default 0, >= 0 */
        double ema_decay;         /* default 0.9999, in [0, 1) */
        double class_dropout;     /* default 0.1, in [0, 1] */
        double grad_clip;         /* default 0 = off, >= 0 */
        int grad_accum;           /* default 1, >= 1, divides batch_size */
        uint64_t seed;            /* default 0 */
        char precision[8];        /* "auto" (default: bf16 on a GPU, fp32 on the CPU) | "bf16" | "fp32" */
    } hp;

    struct {
        double power;             /* s, default 1.0, in [0, 4] */
        double replay_ratio;      /* default 0.2, in [0, 1) */
        double replay_weight;     /* default 0.1, >= 0 */
        int bank_size;            /* default 5000, >= 1 */
        char bank_sampler[8];     /* "ddpm" (default) | "ddim" */
        int bank_steps;           /* default 250, 1..1000 */
        double bank_cfg;          /* default 1.5, >= 1 */
    } diff_tuning;

    /* forgetting_curve (accepted, and stored, with every method; read only by that one). The hybrid
     * part samples as eval.sampler, eval.steps and eval.cfg say and measures with eval.extractor. */
    struct {
        char checkpoint[DT_SPEC_STR]; /* what is analysed: a job id (its newest checkpoint) or a
                                       * model id (the API), or a file path; "" = unset
                                       * (required for forgetting_curve) */
        int buckets;              /* loss curve timestep buckets, default 10, 1..100 */
        int loss_images;          /* held-out images per bucket, default 256, >= 1 */
        int switch_points;        /* hybrid switch timesteps, default 11; 0 (none) or 2..1001 */
        int samples;              /* hybrid images per switch point, default 1000, >= 2 */
    } forgetting;

    struct {
        int sample_every;         /* default 500, 0 = never (step 0 and the end are always sampled) */
        int fid_every;            /* default 1000, 0 = never */
        int fid_samples;          /* default 5000, >= 2 */
        char extractor[DT_SPEC_STR]; /* "inception" (default: FID) | "classifier:<model id or
                                      * path>" (fd_classifier and classifier_accuracy) */
        char sampler[8];          /* "ddim" (default) | "ddpm": how evaluation samples are drawn */
        int steps;                /* default 50, 1..1000 */
        double cfg;               /* guidance scale of evaluation samples, default 1.5, >= 1 */
    } eval;

    struct {
        int every;                /* default 1000, >= 1 */
        int keep;                 /* default 3, >= 1 */
    } checkpoint;

    char device[32];              /* "auto" (default), "cpu", "cuda:N" */
    int priority;                 /* default 0, -100..100 */

    /* Where the server POSTs the job's events, signed (server/webhook.h); null = nowhere. Only
     * `difftune serve` reads it; the engine ignores it. */
    struct {
        char url[DT_SPEC_WEBHOOK_URL_MAX + 1]; /* "" = no webhook; http:// or https://, no
                                                 * user:password@ */
        unsigned events;          /* bit i = spec_webhook_event_names[i]; default (with a url)
                                   * DT_SPEC_WEBHOOK_STATUS, 0 without */
    } webhook;
} dt_spec;

typedef struct {
    char code[32];     /* "invalid_json", "invalid_type", "invalid_value", "unknown_field", "missing_field", "unsupported" */
    char param[128];   /* JSON path of the field, e.g. "hyperparameters.learning_rate" */
    char message[256]; /* human readable, names the field and what is allowed */
} dt_spec_error;

/* Fills s with the documented defaults (base_model and dataset empty). */
void spec_defaults(dt_spec *s);
/* Parses and validates a JSON job request. Unknown fields are errors. Returns 0, or -1 with e
 * filled. On error s holds defaults merged with whatever parsed so far (do not use it). */
int spec_parse(dt_spec *s, const char *json_text, size_t len, dt_spec_error *e);
/* Same from an already parsed JSON object (borrowed). */
int spec_from_json(dt_spec *s, json_t *root, dt_spec_error *e);
/* The complete spec (defaults filled in) as a new JSON object; caller owns the reference. */
json_t *spec_to_json(const dt_spec *s);
/* "pretrain" | "full" | "diff_tuning" | "forgetting_curve" */
const char *spec_method_name(dt_method m);
/* "none" | "difffit" | "bitfit" | "lora" */
const char *spec_peft_name(dt_peft_kind k);
/* The kind spec_peft_name calls name, or -1 for any other string. */
int spec_peft_kind(const char *name);
/* "qkv" | "proj" | "fc1" | "fc2": the LoRA target of bit (1 << t) of dt_peft_config.targets;
 * NULL for t outside 0..3. */
const char *spec_lora_target_name(int t);
/* The event types a webhook may ask for (the SSE types: status, progress, sample, metric,
 * checkpoint, log, error), NULL-terminated; bit i of dt_spec.webhook.events is the i-th. */
extern const char *const spec_webhook_event_names[];
/* The bit of an event type in dt_spec.webhook.events; 0 for a type webhooks do not know. */
unsigned spec_webhook_event_bit(const char *type);
/* The classifier an eval.extractor names ("classifier:<ref>" -> "<ref>"), or NULL for
 * "inception". Points into s. */
const char *spec_eval_classifier(const dt_spec *s);

#endif
