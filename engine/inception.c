/* inception.c — the FID Inception-v3 layer table, weight loading (BatchNorm folded into the
 * convolutions) and the forward pass over a batch of images, one image per OpenMP thread; or,
 * after inception_use_device, the same network handed to the GPU (kernels/cuda/cuda_inception.h).
 *
 * The table is built by functions mirroring torchvision's InceptionA..E constructors (which
 * pytorch-fid's FIDInception* blocks inherit), in their declaration order, which is also the
 * state-dict order and the order the block forwards below consume the convolutions in.
 */
#include "inception.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "inception_ops.h"
#include "rng.h"
#include "safetensors.h"

/* The GPU network needs the CUDA backend and cuDNN; CMake defines both when it finds them. */
#if defined(DIFFTUNE_HAVE_CUDA) && defined(DIFFTUNE_HAVE_CUDNN)
#include "cuda_inception.h"
#define INCEPTION_GPU 1
#else
#define INCEPTION_GPU 0
#endif

#define INCEPTION_CONVS 94
#define INCEPTION_BN_EPS 0.001
#define INCEPTION_COL_FLOATS ((size_t)1 << 20) /* im2col band budget: 4 MiB per thread */
#define INCEPTION_FC_OUT 1008                  /* fc of the TF graph: 1008 classes */

typedef enum { BLOCK_A, BLOCK_B, BLOCK_C, BLOCK_D, BLOCK_E1, BLOCK_E2 } inception_block_kind;

struct dt_inception {
    inception_conv convs[INCEPTION_CONVS]; /* in state-dict order */
    float *params;                         /* every folded weight and bias, one block */
    size_t stem_floats;  /* largest tensor of the stem (buffers A, B) */
    size_t block_floats; /* largest tensor inside a mixed block (branch temporaries T1, T2) */
    size_t col_floats;   /* im2col band */
    float *scratch;      /* (scratch_threads, ws_floats) */
    int scratch_threads;
    char device[16];     /* where inception_features runs: "cpu" or "cuda:N" */
#if INCEPTION_GPU
    cuda_inception *gpu; /* the network on device[] when it is not "cpu", else NULL */
#endif
};

/* ---- the layer table ------------------------------------------------------------------------ */

typedef struct {
    inception_conv *convs;
    int n;
    size_t stem_floats, block_floats, col_floats;
    int in_block; /* 1 once the mixed blocks start */
} inception_builder;

/* Appends BasicConv2d `prefix.branch` (cin -> cout, kernel kh x kw, stride, padding ph, pw) whose
 * input is (cin, H, W); returns its output height and width through *Ho, *Wo. */
static void inception_add(inception_builder *b, const char *prefix, const char *branch, int cin,
                          int cout, int kh, int kw, int stride, int ph, int pw, int H, int W,
                          int *Ho, int *Wo) {
    inception_conv *c = &b->convs[b->n++];
    memset(c, 0, sizeof *c);
    if (branch) snprintf(c->name, sizeof c->name, "%s.%s", prefix, branch);
    else snprintf(c->name, sizeof c->name, "%s", prefix);
    c->cin = cin; c->cout = cout; c->kh = kh; c->kw = kw;
    c->stride = stride; c->ph = ph; c->pw = pw;
    c->in_h = H; c->in_w = W;
    *Ho = inception_out_len(H, kh, stride, ph);
    *Wo = inception_out_len(W, kw, stride, pw);
    size_t in_sz = (size_t)cin * H * W, out_sz = (size_t)cout * *Ho * *Wo;
    size_t *big = b->in_block ? &b->block_floats : &b->stem_floats;
    if (in_sz > *big) *big = in_sz;
    if (out_sz > *big) *big = out_sz;
    size_t col_row = (size_t)cin * kh * kw * *Wo;
    if (col_row > b->col_floats) b->col_floats = col_row;
}

/* torchvision InceptionA(cin, pool_features); returns output channels. */
static int inception_table_a(inception_builder *b, const char *p, int cin, int pool, int S) {
    int h, w;
    inception_add(b, p, "branch1x1", cin, 64, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch5x5_1", cin, 48, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1, S, S, &h, &w);
    inception_add(b, p, "branch_pool", cin, pool, 1, 1, 1, 0, 0, S, S, &h, &w);
    return 64 + 64 + 96 + pool;
}

/* torchvision InceptionB(cin): stride-2 reduction, 35 -> 17. */
static int inception_table_b(inception_builder *b, const char *p, int cin, int S) {
    int h, w;
    inception_add(b, p, "branch3x3", cin, 384, 3, 3, 2, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0, S, S, &h, &w);
    return 384 + 96 + cin;
}

/* torchvision InceptionC(cin, channels_7x7). */
static int inception_table_c(inception_builder *b, const char *p, int cin, int c7, int S) {
    int h, w;
    inception_add(b, p, "branch1x1", cin, 192, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7_1", cin, c7, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3, S, S, &h, &w);
    inception_add(b, p, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7dbl_1", cin, c7, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3, S, S, &h, &w);
    inception_add(b, p, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3, S, S, &h, &w);
    inception_add(b, p, "branch_pool", cin, 192, 1, 1, 1, 0, 0, S, S, &h, &w);
    return 4 * 192;
}

/* torchvision InceptionD(cin): stride-2 reduction, 17 -> 8. */
static int inception_table_d(inception_builder *b, const char *p, int cin, int S) {
    int h, w;
    inception_add(b, p, "branch3x3_1", cin, 192, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3_2", 192, 320, 3, 3, 2, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7x3_1", cin, 192, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3, S, S, &h, &w);
    inception_add(b, p, "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0, S, S, &h, &w);
    inception_add(b, p, "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0, S, S, &h, &w);
    return 320 + 192 + cin;
}

/* torchvision InceptionE(cin) (FIDInceptionE_1 and _2 differ only in the pool). */
static int inception_table_e(inception_builder *b, const char *p, int cin, int S) {
    int h, w;
    inception_add(b, p, "branch1x1", cin, 320, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3_1", cin, 384, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1, S, S, &h, &w);
    inception_add(b, p, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_1", cin, 448, 1, 1, 1, 0, 0, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1, S, S, &h, &w);
    inception_add(b, p, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0, S, S, &h, &w);
    inception_add(b, p, "branch_pool", cin, 192, 1, 1, 1, 0, 0, S, S, &h, &w);
    return 320 + 2 * 384 + 2 * 384 + 192;
}

/* The mixed blocks in network order: pytorch-fid's fid_inception_v3(). */
static const struct {
    const char *name;
    inception_block_kind kind;
    int arg; /* pool_features (A) or channels_7x7 (C) */
} inception_blocks[] = {
    {"Mixed_5b", BLOCK_A, 32},  {"Mixed_5c", BLOCK_A, 64},  {"Mixed_5d", BLOCK_A, 64},
    {"Mixed_6a", BLOCK_B, 0},   {"Mixed_6b", BLOCK_C, 128}, {"Mixed_6c", BLOCK_C, 160},
    {"Mixed_6d", BLOCK_C, 160}, {"Mixed_6e", BLOCK_C, 192}, {"Mixed_7a", BLOCK_D, 0},
    {"Mixed_7b", BLOCK_E1, 0},  {"Mixed_7c", BLOCK_E2, 0},
};
#define INCEPTION_BLOCKS ((int)(sizeof inception_blocks / sizeof inception_blocks[0]))

/* Fills net's conv table (shapes only) and scratch sizes for a 299x299 input. */
static void inception_build(dt_inception *net) {
    inception_builder b = {.convs = net->convs};
    int h = INCEPTION_SIZE, w = INCEPTION_SIZE, C = 3;
    b.stem_floats = (size_t)C * h * w;
    inception_add(&b, "Conv2d_1a_3x3", NULL, 3, 32, 3, 3, 2, 0, 0, h, w, &h, &w);
    inception_add(&b, "Conv2d_2a_3x3", NULL, 32, 32, 3, 3, 1, 0, 0, h, w, &h, &w);
    inception_add(&b, "Conv2d_2b_3x3", NULL, 32, 64, 3, 3, 1, 1, 1, h, w, &h, &w);
    h = inception_out_len(h, 3, 2, 0); w = inception_out_len(w, 3, 2, 0); /* maxpool1 */
    inception_add(&b, "Conv2d_3b_1x1", NULL, 64, 80, 1, 1, 1, 0, 0, h, w, &h, &w);
    inception_add(&b, "Conv2d_4a_3x3", NULL, 80, 192, 3, 3, 1, 0, 0, h, w, &h, &w);
    h = inception_out_len(h, 3, 2, 0); /* maxpool2: 35x35 */
    C = 192;
    b.in_block = 1;
    for (int i = 0; i < INCEPTION_BLOCKS; i++) {
        const char *p = inception_blocks[i].name;
        switch (inception_blocks[i].kind) {
        case BLOCK_A: C = inception_table_a(&b, p, C, inception_blocks[i].arg, h); break;
        case BLOCK_B: C = inception_table_b(&b, p, C, h); h = inception_out_len(h, 3, 2, 0); break;
        case BLOCK_C: C = inception_table_c(&b, p, C, inception_blocks[i].arg, h); break;
        case BLOCK_D: C = inception_table_d(&b, p, C, h); h = inception_out_len(h, 3, 2, 0); break;
        case BLOCK_E1:
        case BLOCK_E2: C = inception_table_e(&b, p, C, h); break;
        }
        /* Block outputs live in the stem buffers. */
        if ((size_t)C * h * h > b.stem_floats) b.stem_floats = (size_t)C * h * h;
    }
    if (b.n != INCEPTION_CONVS || C != INCEPTION_FEATURES || h != 8) {
        fprintf(stderr, "%s:%d: inception table broken: %d convs, %d channels, %dx%d\n",
                __FILE__, __LINE__, b.n, C, h, h);
        abort();
    }
    net->stem_floats = b.stem_floats;
    net->block_floats = b.block_floats;
    net->col_floats = b.col_floats > INCEPTION_COL_FLOATS ? b.col_floats : INCEPTION_COL_FLOATS;
}

double inception_forward_flops(const dt_inception *net) {
    double flops = 0;
    for (int i = 0; i < INCEPTION_CONVS; i++) {
        const inception_conv *c = &net->convs[i];
        double out = (double)inception_out_len(c->in_h, c->kh, c->stride, c->ph) *
                     inception_out_len(c->in_w, c->kw, c->stride, c->pw);
        flops += 2.0 * c->cout * c->cin * c->kh * c->kw * out;
    }
    return flops;
}

/* ---- loading -------------------------------------------------------------------------------- */

/* Checks that tensor `name` exists with exactly the shape (ndim dims); a message otherwise. */
static int inception_check_shape(const st_file *f, const char *name, int ndim, const int64_t *dims,
                                 char *err, size_t errlen) {
    char want[96];
    int len = snprintf(want, sizeof want, "(");
    for (int d = 0; d < ndim; d++)
        len += snprintf(want + len, sizeof want - (size_t)len, "%s%lld", d ? ", " : "",
                        (long long)dims[d]);
    snprintf(want + len, sizeof want - (size_t)len, ")");
    const st_tensor *t = safetensors_find(f, name);
    if (!t) {
        dt_errorf(err, errlen, "%s: missing tensor '%s' (expected shape %s): FID Inception weights "
                  "are pytorch-fid's pt_inception-2015-12-05 state dict saved as safetensors",
                  f->path, name, want);
        return -1;
    }
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == dims[d];
    if (!same) {
        char got[96];
        len = snprintf(got, sizeof got, "(");
        for (int d = 0; d < t->ndim && len < (int)sizeof got; d++)
            len += snprintf(got + len, sizeof got - (size_t)len, "%s%lld", d ? ", " : "",
                            (long long)t->shape[d]);
        if (len < (int)sizeof got) snprintf(got + len, sizeof got - (size_t)len, ")");
        dt_errorf(err, errlen, "%s: tensor '%s' has shape %s, FID Inception-v3 expects %s",
                  f->path, name, got, want);
        return -1;
    }
    return 0;
}

/* Reads conv c (weight and BatchNorm) from f into c->weight/c->bias, folding the BatchNorm:
 * w' = w * g / sqrt(var + eps), b' = beta - mean * g / sqrt(var + eps). bn is 4 * cout scratch. */
static int inception_load_conv(const st_file *f, inception_conv *c, float *bn, char *err,
                               size_t errlen) {
    static const char *bn_names[4] = {"weight", "bias", "running_mean", "running_var"};
    char name[96];
    const int64_t wdims[4] = {c->cout, c->cin, c->kh, c->kw}, bdims[1] = {c->cout};
    const size_t K = (size_t)c->cin * c->kh * c->kw;
    snprintf(name, sizeof name, "%s.conv.weight", c->name);
    if (inception_check_shape(f, name, 4, wdims, err, errlen) ||
        safetensors_read_f32(f, name, c->weight, (size_t)c->cout * K, err, errlen))
        return -1;
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "%s.bn.%s", c->name, bn_names[k]);
        if (inception_check_shape(f, name, 1, bdims, err, errlen) ||
            safetensors_read_f32(f, name, bn + (size_t)k * c->cout, (size_t)c->cout, err, errlen))
            return -1;
    }
    const float *gamma = bn, *beta = bn + c->cout, *mean = bn + 2 * c->cout, *var = bn + 3 * c->cout;
    for (int o = 0; o < c->cout; o++) {
        if (!(var[o] >= 0.0f)) {
            dt_errorf(err, errlen, "%s: %s.bn.running_var[%d] is %g; a variance must be >= 0",
                      f->path, c->name, o, (double)var[o]);
            return -1;
        }
        const double scale = (double)gamma[o] / sqrt((double)var[o] + INCEPTION_BN_EPS);
        for (size_t k = 0; k < K; k++) c->weight[o * K + k] = (float)(c->weight[o * K + k] * scale);
        c->bias[o] = (float)((double)beta[o] - (double)mean[o] * scale);
    }
    return 0;
}

int inception_load(dt_inception **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    dt_inception *net = calloc(1, sizeof *net);
    if (!net) { dt_errorf(err, errlen, "out of memory loading %s", path); return -1; }
    snprintf(net->device, sizeof net->device, "cpu");
    inception_build(net);
    size_t total = 0;
    int max_cout = 0;
    for (int i = 0; i < INCEPTION_CONVS; i++) {
        const inception_conv *c = &net->convs[i];
        total += (size_t)c->cout * c->cin * c->kh * c->kw + (size_t)c->cout;
        if (c->cout > max_cout) max_cout = c->cout;
    }
    float *bn = malloc(sizeof(float) * 4 * (size_t)max_cout);
    net->params = malloc(sizeof(float) * total);
    if (!bn || !net->params) {
        free(bn);
        inception_free(net);
        dt_errorf(err, errlen, "out of memory loading %s (%zu weights)", path, total);
        return -1;
    }
    st_file f;
    if (safetensors_open(&f, path, err, errlen)) { free(bn); inception_free(net); return -1; }
    float *p = net->params;
    int rc = 0;
    for (int i = 0; i < INCEPTION_CONVS && rc == 0; i++) {
        inception_conv *c = &net->convs[i];
        c->weight = p;
        p += (size_t)c->cout * c->cin * c->kh * c->kw;
        c->bias = p;
        p += c->cout;
        rc = inception_load_conv(&f, c, bn, err, errlen);
    }
    safetensors_close(&f);
    free(bn);
    if (rc) { inception_free(net); return -1; }
    *out = net;
    return 0;
}

static void inception_release_gpu(dt_inception *net);

void inception_free(dt_inception *net) {
    if (!net) return;
    inception_release_gpu(net);
    free(net->params);
    free(net->scratch);
    free(net);
}

/* ---- forward -------------------------------------------------------------------------------- */

/* One thread's scratch: stem buffers A, B (block inputs and outputs too), branch temporaries
 * T1, T2, and the im2col band. */
typedef struct {
    float *a, *b, *t1, *t2, *col;
    size_t col_floats;
} inception_ws;

static size_t inception_ws_floats(const dt_inception *net) {
    return 2 * net->stem_floats + 2 * net->block_floats + net->col_floats;
}

static inception_ws inception_ws_of(const dt_inception *net, int thread) {
    inception_ws w;
    w.a = net->scratch + (size_t)thread * inception_ws_floats(net);
    w.b = w.a + net->stem_floats;
    w.t1 = w.b + net->stem_floats;
    w.t2 = w.t1 + net->block_floats;
    w.col = w.t2 + net->block_floats;
    w.col_floats = net->col_floats;
    return w;
}

/* Runs c on in (c->cin, S, S) into out; the block's spatial size is square throughout. */
static void inception_run(const inception_conv *c, const inception_ws *w, const float *in, int S,
                          float *out) {
    inception_op_conv(c, in, S, S, out, w->col, w->col_floats);
}

/* FIDInceptionA: [1x1, 5x5, 3x3dbl, conv(avgpool)] concatenated into y. */
static void inception_block_a(const inception_conv *c, const inception_ws *w, const float *x,
                              int S, float *y) {
    const size_t HW = (size_t)S * S;
    float *o = y;
    inception_run(&c[0], w, x, S, o); o += c[0].cout * HW;
    inception_run(&c[1], w, x, S, w->t1);
    inception_run(&c[2], w, w->t1, S, o); o += c[2].cout * HW;
    inception_run(&c[3], w, x, S, w->t1);
    inception_run(&c[4], w, w->t1, S, w->t2);
    inception_run(&c[5], w, w->t2, S, o); o += c[5].cout * HW;
    inception_op_avgpool3(x, c[6].cin, S, S, w->t1);
    inception_run(&c[6], w, w->t1, S, o);
}

/* InceptionB (Mixed_6a): [3x3 s2, 3x3dbl (last s2), maxpool s2]. */
static void inception_block_b(const inception_conv *c, const inception_ws *w, const float *x,
                              int S, float *y) {
    const int So = inception_out_len(S, 3, 2, 0);
    const size_t HWo = (size_t)So * So;
    float *o = y;
    inception_run(&c[0], w, x, S, o); o += c[0].cout * HWo;
    inception_run(&c[1], w, x, S, w->t1);
    inception_run(&c[2], w, w->t1, S, w->t2);
    inception_run(&c[3], w, w->t2, S, o); o += c[3].cout * HWo;
    inception_op_maxpool3(x, c[0].cin, S, S, 2, 0, o);
}

/* FIDInceptionC: [1x1, 7x7 (1x7, 7x1), 7x7dbl (7x1, 1x7, 7x1, 1x7), conv(avgpool)]. */
static void inception_block_c(const inception_conv *c, const inception_ws *w, const float *x,
                              int S, float *y) {
    const size_t HW = (size_t)S * S;
    float *o = y;
    inception_run(&c[0], w, x, S, o); o += c[0].cout * HW;
    inception_run(&c[1], w, x, S, w->t1);
    inception_run(&c[2], w, w->t1, S, w->t2);
    inception_run(&c[3], w, w->t2, S, o); o += c[3].cout * HW;
    inception_run(&c[4], w, x, S, w->t1);
    inception_run(&c[5], w, w->t1, S, w->t2);
    inception_run(&c[6], w, w->t2, S, w->t1);
    inception_run(&c[7], w, w->t1, S, w->t2);
    inception_run(&c[8], w, w->t2, S, o); o += c[8].cout * HW;
    inception_op_avgpool3(x, c[9].cin, S, S, w->t1);
    inception_run(&c[9], w, w->t1, S, o);
}

/* InceptionD (Mixed_7a): [3x3 (last s2), 7x7x3 (last s2), maxpool s2]. */
static void inception_block_d(const inception_conv *c, const inception_ws *w, const float *x,
                              int S, float *y) {
    const int So = inception_out_len(S, 3, 2, 0);
    const size_t HWo = (size_t)So * So;
    float *o = y;
    inception_run(&c[0], w, x, S, w->t1);
    inception_run(&c[1], w, w->t1, S, o); o += c[1].cout * HWo;
    inception_run(&c[2], w, x, S, w->t1);
    inception_run(&c[3], w, w->t1, S, w->t2);
    inception_run(&c[4], w, w->t2, S, w->t1);
    inception_run(&c[5], w, w->t1, S, o); o += c[5].cout * HWo;
    inception_op_maxpool3(x, c[0].cin, S, S, 2, 0, o);
}

/* FIDInceptionE_1 / _2: [1x1, 3x3 (1x3 | 3x1), 3x3dbl (3x3, then 1x3 | 3x1), conv(pool)], the
 * pool an average pool (count_include_pad=False) in E_1 and a 3x3 stride-1 max pool in E_2. */
static void inception_block_e(const inception_conv *c, const inception_ws *w, const float *x,
                              int S, float *y, int max_pool) {
    const size_t HW = (size_t)S * S;
    float *o = y;
    inception_run(&c[0], w, x, S, o); o += c[0].cout * HW;
    inception_run(&c[1], w, x, S, w->t1);
    inception_run(&c[2], w, w->t1, S, o); o += c[2].cout * HW;
    inception_run(&c[3], w, w->t1, S, o); o += c[3].cout * HW;
    inception_run(&c[4], w, x, S, w->t1);
    inception_run(&c[5], w, w->t1, S, w->t2);
    inception_run(&c[6], w, w->t2, S, o); o += c[6].cout * HW;
    inception_run(&c[7], w, w->t2, S, o); o += c[7].cout * HW;
    if (max_pool) inception_op_maxpool3(x, c[8].cin, S, S, 1, 1, w->t1);
    else inception_op_avgpool3(x, c[8].cin, S, S, w->t1);
    inception_run(&c[8], w, w->t1, S, o);
}

/* Features (2048) of one engine image (C, H, W) with thread scratch w. */
static void inception_forward_one(const dt_inception *net, const inception_ws *w,
                                  const float *img, int C, int H, int W, float *feat) {
    const int R = INCEPTION_SIZE;
    const size_t RR = (size_t)R * R;
    for (int ch = 0; ch < 3; ch++) {
        if (ch < C) inception_op_resize(img + (size_t)ch * H * W, H, W, w->a + ch * RR, R, R);
        else memcpy(w->a + ch * RR, w->a, sizeof(float) * RR); /* grey: replicate */
    }
    const inception_conv *c = net->convs;
    int h, wd;
    inception_op_conv(&c[0], w->a, R, R, w->b, w->col, w->col_floats);          /* 32x149 */
    h = wd = inception_out_len(R, 3, 2, 0);
    inception_op_conv(&c[1], w->b, h, wd, w->a, w->col, w->col_floats);         /* 32x147 */
    h = wd = h - 2;
    inception_op_conv(&c[2], w->a, h, wd, w->b, w->col, w->col_floats);         /* 64x147 */
    inception_op_maxpool3(w->b, c[2].cout, h, wd, 2, 0, w->a);                  /* 64x73 */
    h = wd = inception_out_len(h, 3, 2, 0);
    inception_op_conv(&c[3], w->a, h, wd, w->b, w->col, w->col_floats);         /* 80x73 */
    inception_op_conv(&c[4], w->b, h, wd, w->a, w->col, w->col_floats);         /* 192x71 */
    h = h - 2;
    inception_op_maxpool3(w->a, c[4].cout, h, h, 2, 0, w->b);                   /* 192x35 */
    h = inception_out_len(h, 3, 2, 0);
    c += 5;
    float *x = w->b, *y = w->a;
    for (int i = 0; i < INCEPTION_BLOCKS; i++) {
        switch (inception_blocks[i].kind) {
        case BLOCK_A: inception_block_a(c, w, x, h, y); c += 7; break;
        case BLOCK_B: inception_block_b(c, w, x, h, y); c += 4; h = inception_out_len(h, 3, 2, 0); break;
        case BLOCK_C: inception_block_c(c, w, x, h, y); c += 10; break;
        case BLOCK_D: inception_block_d(c, w, x, h, y); c += 6; h = inception_out_len(h, 3, 2, 0); break;
        case BLOCK_E1: inception_block_e(c, w, x, h, y, 0); c += 9; break;
        case BLOCK_E2: inception_block_e(c, w, x, h, y, 1); c += 9; break;
        }
        float *t = x; x = y; y = t;
    }
    inception_op_mean(x, INCEPTION_FEATURES, h * h, feat); /* adaptive avg pool to 1x1 */
}

/* Grows the scratch to `threads` workspaces; 0, or -1 when memory runs out. */
static int inception_scratch(dt_inception *net, int threads) {
    if (net->scratch_threads >= threads) return 0;
    free(net->scratch);
    net->scratch = malloc(sizeof(float) * inception_ws_floats(net) * (size_t)threads);
    net->scratch_threads = net->scratch ? threads : 0;
    return net->scratch ? 0 : -1;
}

/* inception_features on the CPU, for a valid shape and n >= 1. */
static int inception_features_cpu(dt_inception *net, const float *images, int n, int C, int H,
                                  int W, float *features, char *err, size_t errlen) {
    const int threads = omp_get_max_threads() > 1 ? omp_get_max_threads() : 1;
    const int workers = threads < n ? threads : n; /* static,1: image i on thread i % threads */
    if (inception_scratch(net, workers)) {
        dt_errorf(err, errlen, "inception features: out of memory for %d thread workspaces of "
                  "%zu MiB", workers, inception_ws_floats(net) * sizeof(float) >> 20);
        return -1;
    }
    const size_t img = (size_t)C * H * W;
    /* A full team even when n < threads: inside an active parallel region OpenBLAS runs every
     * sgemm single-threaded, so an image gets exactly the same arithmetic whatever it is batched
     * with (a BLAS-threaded sgemm rounds differently). With one thread BLAS is single-threaded
     * too. Idle threads when n < threads are the price; FID batches are large. */
    #pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int i = 0; i < n; i++) {
        inception_ws w = inception_ws_of(net, omp_get_thread_num());
        inception_forward_one(net, &w, images + i * img, C, H, W,
                              features + (size_t)i * INCEPTION_FEATURES);
    }
    return 0;
}

#if INCEPTION_GPU
static int inception_features_gpu(dt_inception *net, const float *images, int n, int C, int H,
                                  int W, float *features, char *err, size_t errlen);
#endif

int inception_features(dt_inception *net, const float *images, int n, int C, int H, int W,
                       float *features, char *err, size_t errlen) {
    if (n < 0 || (C != 1 && C != 3) || H < 1 || W < 1) {
        dt_errorf(err, errlen, "inception features: images of shape (%d, %d, %d, %d); need n >= 0, "
                  "1 or 3 channels and H, W >= 1", n, C, H, W);
        return -1;
    }
    if (n == 0) return 0;
#if INCEPTION_GPU
    if (net->gpu) return inception_features_gpu(net, images, n, C, H, W, features, err, errlen);
#endif
    return inception_features_cpu(net, images, n, C, H, W, features, err, errlen);
}

/* ---- the GPU network ------------------------------------------------------------------------ */

#define INCEPTION_GPU_TEST_SIDE 64 /* the test image of inception_use_device: 3 x 64 x 64 */

const char *inception_device(const dt_inception *net) { return net->device; }

#if INCEPTION_GPU

static void inception_release_gpu(dt_inception *net) {
    cuda_inception_free(net->gpu);
    net->gpu = NULL;
    snprintf(net->device, sizeof net->device, "cpu");
}

static int inception_features_gpu(dt_inception *net, const float *images, int n, int C, int H,
                                  int W, float *features, char *err, size_t errlen) {
    if (cuda_inception_features(net->gpu, images, n, C, H, W, features) == 0) return 0;
    /* A failed network stays failed (its errors are sticky): later calls go back to the CPU. */
    dt_errorf(err, errlen, "inception features: %s; the FID Inception runs on the CPU from now on",
              cuda_inception_error(net->gpu));
    inception_release_gpu(net);
    return -1;
}

static cuda_inception_block inception_gpu_block(inception_block_kind kind) {
    switch (kind) {
    case BLOCK_A: return CUDA_INCEPTION_A;
    case BLOCK_B: return CUDA_INCEPTION_B;
    case BLOCK_C: return CUDA_INCEPTION_C;
    case BLOCK_D: return CUDA_INCEPTION_D;
    case BLOCK_E1: return CUDA_INCEPTION_E1;
    case BLOCK_E2: break;
    }
    return CUDA_INCEPTION_E2;
}

/* Hands net's description to g: the stem and the mixed blocks in network order, the folded
 * convolutions in state-dict order. Returns 0 or -1 (cuda_inception_error says why). */
static int inception_describe_gpu(const dt_inception *net, cuda_inception *g) {
    int rc = cuda_inception_add_block(g, CUDA_INCEPTION_STEM), width = 0;
    for (int i = 0; i < INCEPTION_BLOCKS && rc == 0; i++)
        rc = cuda_inception_add_block(g, inception_gpu_block(inception_blocks[i].kind));
    for (int i = 0; i < INCEPTION_CONVS && rc == 0; i++) {
        const inception_conv *c = &net->convs[i];
        const cuda_inception_conv_desc d = {c->cin, c->cout, c->kh, c->kw, c->stride, c->ph,
                                            c->pw, c->weight, c->bias};
        rc = cuda_inception_add_conv(g, &d);
    }
    if (rc == 0) rc = cuda_inception_finish(g, &width);
    if (rc == 0 && width != INCEPTION_FEATURES) {
        fprintf(stderr, "%s:%d: the GPU Inception makes %d features, not %d\n", __FILE__,
                __LINE__, width, INCEPTION_FEATURES);
        abort();
    }
    return rc;
}

/* Features of one fixed test image on the CPU and on g: 0 when they agree to
 * INCEPTION_GPU_TOL of the CPU's scale, else -1 with the error measured. */
static int inception_check_gpu(dt_inception *net, cuda_inception *g, const char *device, char *err,
                               size_t errlen) {
    const int S = INCEPTION_GPU_TEST_SIDE;
    const size_t len = (size_t)3 * S * S;
    float *img = malloc(sizeof(float) * (len + 2 * INCEPTION_FEATURES));
    if (!img) {
        dt_errorf(err, errlen, "%s: out of memory for the GPU Inception's test image", device);
        return -1;
    }
    float *cpu = img + len, *gpu = cpu + INCEPTION_FEATURES;
    for (size_t i = 0; i < len; i++) img[i] = 2.0f * dt_rng_uniform(2015, 12, i) - 1.0f;
    int rc = inception_features_cpu(net, img, 1, 3, S, S, cpu, err, errlen);
    /* The CPU scratch is needed again only if the net comes back to the CPU. */
    free(net->scratch);
    net->scratch = NULL;
    net->scratch_threads = 0;
    if (rc == 0 && cuda_inception_features(g, img, 1, 3, S, S, gpu)) {
        dt_errorf(err, errlen, "%s", cuda_inception_error(g));
        rc = -1;
    }
    if (rc == 0) {
        double worst = 0, scale = 0;
        for (int i = 0; i < INCEPTION_FEATURES; i++) {
            const double d = fabs((double)gpu[i] - cpu[i]);
            worst = d > worst || d != d ? d : worst; /* a NaN sticks */
            scale = fmax(scale, fabs((double)cpu[i]));
        }
        if (!(worst <= INCEPTION_GPU_TOL * scale)) {
            dt_errorf(err, errlen, "%s: the GPU Inception's features of a test image differ from "
                      "the CPU's by %.3g of their scale %.3g (at most %g is accepted)", device,
                      worst / fmax(scale, 1e-30), scale, INCEPTION_GPU_TOL);
            rc = -1;
        }
    }
    free(img);
    return rc;
}

/* Builds, checks and installs the network on CUDA device index (named device). */
static int inception_attach_gpu(dt_inception *net, int index, const char *device, char *err,
                                size_t errlen) {
    if (net->gpu && !strcmp(net->device, device)) return 0;
    char why[512];
    cuda_inception *g = cuda_inception_create(index, why, sizeof why);
    if (!g) {
        dt_errorf(err, errlen, "%s", why);
        return -1;
    }
    if (inception_describe_gpu(net, g)) {
        dt_errorf(err, errlen, "%s", cuda_inception_error(g));
        cuda_inception_free(g);
        return -1;
    }
    if (inception_check_gpu(net, g, device, err, errlen)) {
        cuda_inception_free(g);
        return -1;
    }
    inception_release_gpu(net);
    net->gpu = g;
    snprintf(net->device, sizeof net->device, "cuda:%d", index);
    return 0;
}

#else /* no GPU network in this build */

static void inception_release_gpu(dt_inception *net) {
    snprintf(net->device, sizeof net->device, "cpu");
}

static int inception_attach_gpu(dt_inception *net, int index, const char *device, char *err,
                                size_t errlen) {
#ifdef DIFFTUNE_HAVE_CUDA
    dt_errorf(err, errlen, "%s: this build has no GPU FID Inception (CMake found no cuDNN 8 or "
              "newer next to the CUDA toolkit)", device);
#else
    dt_errorf(err, errlen, "%s: this build has no GPU FID Inception (it was built without the "
              "CUDA backend)", device);
#endif
    return -1;
}

#endif

int inception_use_device(dt_inception *net, const char *device, char *err, size_t errlen) {
    int index = -1;
    char tail;
    if (!device || !strcmp(device, "cpu")) {
        inception_release_gpu(net);
        return 0;
    }
    if (strncmp(device, "cuda:", 5) || sscanf(device + 5, "%d%c", &index, &tail) != 1 ||
        index < 0) {
        dt_errorf(err, errlen, "unknown device \"%s\" for the FID Inception: use cpu or cuda:N",
                  device);
        return -1;
    }
    return inception_attach_gpu(net, index, device, err, errlen);
}

/* ---- random weights for tests and benchmarks ------------------------------------------------ */

int inception_write_random_weights(const char *path, uint64_t seed, char *err, size_t errlen) {
    dt_inception net;
    memset(&net, 0, sizeof net);
    inception_build(&net);
    enum { PER_CONV = 5, N_TENSORS = INCEPTION_CONVS * PER_CONV + 2 };
    static const char *suffix[PER_CONV] = {"conv.weight", "bn.weight", "bn.bias",
                                           "bn.running_mean", "bn.running_var"};
    st_write_tensor *t = calloc(N_TENSORS, sizeof *t);
    char (*names)[96] = calloc(N_TENSORS, sizeof *names);
    float **data = calloc(N_TENSORS, sizeof *data);
    int rc = t && names && data ? 0 : -1;
    for (int i = 0; i < INCEPTION_CONVS && rc == 0; i++) {
        const inception_conv *c = &net.convs[i];
        const size_t K = (size_t)c->cin * c->kh * c->kw;
        for (int k = 0; k < PER_CONV && rc == 0; k++) {
            const int j = i * PER_CONV + k;
            const size_t numel = k == 0 ? (size_t)c->cout * K : (size_t)c->cout;
            snprintf(names[j], sizeof names[j], "%s.%s", c->name, suffix[k]);
            t[j].name = names[j];
            t[j].dtype = ST_F32;
            if (k == 0) {
                t[j].ndim = 4;
                t[j].shape[0] = c->cout; t[j].shape[1] = c->cin;
                t[j].shape[2] = c->kh; t[j].shape[3] = c->kw;
            } else {
                t[j].ndim = 1;
                t[j].shape[0] = c->cout;
            }
            data[j] = malloc(sizeof(float) * numel);
            if (!data[j]) { rc = -1; break; }
            t[j].data = data[j];
            const uint64_t stream = DT_STREAM_INIT + (uint64_t)j;
            const float he = sqrtf(2.0f / (float)K);
            for (size_t e = 0; e < numel; e++) {
                float v;
                switch (k) {
                case 0: v = he * dt_philox_normal(seed, stream, e); break;
                case 1: v = 0.8f + 0.4f * dt_rng_uniform(seed, stream, e); break;
                case 4: v = 0.5f + dt_rng_uniform(seed, stream, e); break;
                default: v = 0.1f * dt_philox_normal(seed, stream, e); break;
                }
                data[j][e] = v;
            }
        }
    }
    /* The classifier of the TF graph (1008 classes): unused by the features, kept for a complete
     * state dict. */
    for (int k = 0; k < 2 && rc == 0; k++) {
        const int j = INCEPTION_CONVS * PER_CONV + k;
        const size_t numel = k == 0 ? (size_t)INCEPTION_FC_OUT * INCEPTION_FEATURES : INCEPTION_FC_OUT;
        snprintf(names[j], sizeof names[j], "%s", k == 0 ? "fc.weight" : "fc.bias");
        t[j].name = names[j];
        t[j].dtype = ST_F32;
        t[j].ndim = k == 0 ? 2 : 1;
        t[j].shape[0] = INCEPTION_FC_OUT;
        t[j].shape[1] = INCEPTION_FEATURES;
        data[j] = malloc(sizeof(float) * numel);
        if (!data[j]) { rc = -1; break; }
        t[j].data = data[j];
        for (size_t e = 0; e < numel; e++)
            data[j][e] = 0.01f * dt_philox_normal(seed, DT_STREAM_INIT + (uint64_t)j, e);
    }
    if (rc) dt_errorf(err, errlen, "%s: out of memory for random Inception weights", path);
    else rc = safetensors_write(path, t, N_TENSORS, NULL, err, errlen);
    for (int j = 0; data && j < N_TENSORS; j++) free(data[j]);
    free(data);
    free(names);
    free(t);
    return rc;
}
