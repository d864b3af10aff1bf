/* cmd_export.c — `difftune export`: a checkpoint as a plain, standalone DiT file; a PEFT
 * checkpoint (only its trained tensors, referencing its base model) is merged into its base. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "checkpoint.h"
#include "cli.h"
#include "fsutil.h"
#include "peft.h"
#include "safetensors.h"

static void export_usage(FILE *f) {
    fprintf(f,
        "usage: difftune export --checkpoint FILE --out FILE\n\n"
        "Writes the checkpoint's EMA weights as a plain DiT safetensors file (the official DiT\n"
        "tensor names, pos_embed and difftune's config metadata): what PyTorch's DiT, `difftune\n"
        "sample`, `difftune fid` and new jobs load. A PEFT checkpoint (format difftune.peft.v1:\n"
        "only the DiffFit, BitFit or LoRA tensors a job trained, plus the path and sha256 of its\n"
        "base model) is merged into its base: DiffFit's gammas folded into the qkv, proj and fc2\n"
        "rows, LoRA's (alpha / r) B A added to its target weights, trained biases and label table\n"
        "copied in. The base must still be where the checkpoint says, unchanged. Prints one JSON\n"
        "line {\"out\", \"bytes\", \"sha256\", \"peft\"}.\n\n"
        "exit status: 0 written, 1 failure (I/O, a missing or changed base), 2 bad usage or input\n");
}

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            export_usage(stdout);
            return 0;
        }
        if (i + 1 < argc && !strcmp(argv[i], "--checkpoint")) ckpt = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
        else {
            fprintf(stderr, "difftune export: unknown or incomplete option '%s'\n", argv[i]);
            export_usage(stderr);
            return 2;
        }
    }
    if (!ckpt || !out) {
        fprintf(stderr, "difftune export: --checkpoint and --out are required\n");
        export_usage(stderr);
        return 2;
    }
    char err[2048], sha[65], peft[32] = "none";
    st_file f;
    if (safetensors_open(&f, ckpt, err, sizeof err)) {
        fprintf(stderr, "difftune export: %s\n", err);
        return 2;
    }
    if (checkpoint_is_peft(&f)) {
        dt_peft_config pc;
        const char *meta = safetensors_meta(&f, "peft");
        if (meta && !peft_config_parse(meta, &pc, err, sizeof err))
            snprintf(peft, sizeof peft, "%s", spec_peft_name(pc.kind));
    }
    safetensors_close(&f);
    if (checkpoint_export_merged(ckpt, out, err, sizeof err) || fs_sha256_file(out, sha, err, sizeof err)) {
        fprintf(stderr, "difftune export: %s\n", err);
        return 1;
    }
    json_t *line = json_pack("{s:s, s:I, s:s, s:s}", "out", out, "bytes", (json_int_t)fs_file_size(out),
                             "sha256", sha, "peft", peft);
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(line);
    return 0;
}
