/* cuda_conv.cu — conv2d_scratch_bytes and conv2d_forward on the GPU (semantics in backend.h,
 * reference kernels/cpu/cpu_conv.c).
 *
 * With cuDNN (DIFFTUNE_HAVE_CUDNN) a convolution runs as cudnnConvolutionForward on the
 * backend's stream, then a bias kernel. Algorithms are chosen as the GPU FID Inception chooses
 * them (cuda_dnn_choose_forward: cuDNN's heuristic order, deterministic, no FFT or Winograd):
 * FMA math only in DT_PRECISION_FP32, TF32 tensor-op math allowed in DT_PRECISION_BF16. A plan
 * (algorithm, workspace, chunking) is made once per shape and precision and cached, so
 * conv2d_scratch_bytes and conv2d_forward agree; scratch_bytes answers for both precisions, so
 * the precision may change between the two calls.
 *
 * The scratch size a layer was promised (the largest answer of scratch_bytes for its shape at
 * any batch size) is remembered: a forward of a smaller batch than was asked about (the last
 * batch of a dataset) plans within that promise, choosing only algorithms whose workspace fits,
 * so cuDNN never writes past the caller's buffer. A shape never asked about may use no scratch.
 *
 * cuDNN pads symmetrically. A convolution padded differently on opposite sides (diffusers'
 * Downsample2D: 0 above and left, 1 below and right) copies its input, padded, into the scratch
 * and runs unpadded; the copy goes in chunks of images so it stays within CUDA_CONV_PAD_BUDGET.
 * Chunks also keep every tensor cuDNN sees under 2^31 elements.
 *
 * Without cuDNN, when cuDNN offers no qualifying algorithm for a shape, or with the environment
 * variable DIFFTUNE_CUDA_CONV=im2col (read when the backend first convolves; for checking the
 * fallback on a machine that has cuDNN), the convolution is im2col + cuBLAS (cuda_conv_gemm.cu).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_conv_internal.h"
#ifdef DIFFTUNE_HAVE_CUDNN
#include "cuda_dnn.h"
#endif

#define CUDA_CONV_MAX_WORKSPACE ((size_t)256 << 20) /* larger rules a cuDNN algorithm out */
#define CUDA_CONV_PAD_BUDGET ((size_t)256 << 20)    /* padded input copy per chunk */
#define CUDA_CONV_MAX_ELEMS ((size_t)INT32_MAX)     /* cuDNN's tensors index with int */
#define CUDA_CONV_PLANS 128                         /* cached shapes; the oldest is replaced */
#define CUDA_CONV_UNBOUNDED ((size_t)-1)            /* plan budget of a scratch_bytes question */

/* How one shape at one precision runs. */
typedef struct {
    cuda_conv_shape shape;
    int bf16;
    int gemm;        /* im2col + cuBLAS instead of cuDNN */
    int chunk;       /* images per cuDNN call */
    int pad_copy;    /* asymmetric padding: each chunk is copied padded into the scratch */
    size_t ws_at;    /* where the cuDNN workspace starts in the scratch (after the padded copy) */
#ifdef DIFFTUNE_HAVE_CUDNN
    cudnnConvolutionFwdAlgo_t algo[2]; /* [0] full chunks, [1] the last, shorter chunk */
    cudnnMathType_t math[2];
#endif
    size_t ws[2];
    size_t scratch;  /* bytes the op needs */
} cuda_conv_plan;

/* The most scratch_bytes ever answered for a layer (its shape with B = 0), over batch sizes. */
typedef struct {
    cuda_conv_shape layer;
    size_t bytes;
} cuda_conv_promise;

typedef struct {
    int force_gemm; /* DIFFTUNE_CUDA_CONV=im2col */
#ifdef DIFFTUNE_HAVE_CUDNN
    cudnnHandle_t dnn; /* bound to the backend's stream */
    cudnnTensorDescriptor_t xdesc, ydesc;
    cudnnFilterDescriptor_t wdesc;
    cudnnConvolutionDescriptor_t cdesc;
#endif
    cuda_conv_plan plans[CUDA_CONV_PLANS];
    int nplans, next; /* next: the slot to overwrite once all are used */
    cuda_conv_promise *promises; /* grows with the distinct layers asked about, never shrinks */
    int npromises, promise_cap;
} cuda_conv_state;

/* ---- kernels -------------------------------------------------------------------------------- */

/* out (rows = B*OC, plane) += bias[row % OC]; blocks on y stride over rows. */
static __global__ void cuda_conv_bias_kernel(float *out, const float *bias, size_t rows, int OC,
                                             size_t plane) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float b = bias[r % OC];
        float *o = out + r * plane;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < plane; i += stride)
            o[i] += b;
    }
}

#ifdef DIFFTUNE_HAVE_CUDNN
/* out (n, C, Hp, Wp) = in (n, C, H, W) placed at row pt, column pl, zeros around it. */
static __global__ void cuda_conv_pad_kernel(float *out, const float *in, size_t planes, int H,
                                            int W, int Hp, int Wp, int pt, int pl) {
    const size_t total = planes * Hp * Wp, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int x = (int)(idx % Wp) - pl, y = (int)(idx / Wp % Hp) - pt;
        const size_t p = idx / ((size_t)Wp * Hp);
        out[idx] = y >= 0 && y < H && x >= 0 && x < W ? in[(p * H + y) * W + x] : 0.0f;
    }
}
#endif

/* ---- state ---------------------------------------------------------------------------------- */

void cuda_conv_release(cuda_ctx *cx) {
    cuda_conv_state *st = (cuda_conv_state *)cx->conv;
    if (!st) return;
#ifdef DIFFTUNE_HAVE_CUDNN
    if (st->cdesc) cudnnDestroyConvolutionDescriptor(st->cdesc);
    if (st->wdesc) cudnnDestroyFilterDescriptor(st->wdesc);
    if (st->ydesc) cudnnDestroyTensorDescriptor(st->ydesc);
    if (st->xdesc) cudnnDestroyTensorDescriptor(st->xdesc);
    if (st->dnn) cudnnDestroy(st->dnn);
#endif
    free(st->promises);
    free(st);
    cx->conv = NULL;
}

#ifdef DIFFTUNE_HAVE_CUDNN
/* 0 for CUDNN_STATUS_SUCCESS, else records cuDNN's status and message against op (-1). */
static int cuda_conv_check_dnn(cuda_ctx *cx, cudnnStatus_t s, const char *op) {
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    char reason[400];
    cuda_dnn_status_text(s, reason, sizeof reason);
    return cuda_fail(cx, op, reason);
}
#endif

/* The context's convolution state, made on first use (a cuDNN handle on the backend's stream
 * and four descriptors). NULL after recording a failure. */
static cuda_conv_state *cuda_conv_state_of(cuda_ctx *cx, const char *op) {
    if (cx->conv) return (cuda_conv_state *)cx->conv;
    cuda_conv_state *st = (cuda_conv_state *)calloc(1, sizeof *st);
    if (!st) {
        cuda_fail(cx, op, "out of host memory");
        return NULL;
    }
    cx->conv = st;
    const char *mode = getenv("DIFFTUNE_CUDA_CONV");
    st->force_gemm = mode && !strcmp(mode, "im2col");
#ifdef DIFFTUNE_HAVE_CUDNN
    if (!st->force_gemm) {
        int rc = cuda_conv_check_dnn(cx, cudnnCreate(&st->dnn), op);
        if (rc) st->dnn = NULL;
        rc = rc || cuda_conv_check_dnn(cx, cudnnSetStream(st->dnn, cx->stream), op);
        if (!rc && cuda_conv_check_dnn(cx, cudnnCreateTensorDescriptor(&st->xdesc), op))
            st->xdesc = NULL, rc = -1;
        if (!rc && cuda_conv_check_dnn(cx, cudnnCreateTensorDescriptor(&st->ydesc), op))
            st->ydesc = NULL, rc = -1;
        if (!rc && cuda_conv_check_dnn(cx, cudnnCreateFilterDescriptor(&st->wdesc), op))
            st->wdesc = NULL, rc = -1;
        if (!rc && cuda_conv_check_dnn(cx, cudnnCreateConvolutionDescriptor(&st->cdesc), op))
            st->cdesc = NULL, rc = -1;
        if (rc) {
            cuda_conv_release(cx);
            return NULL;
        }
    }
#endif
    return st;
}

/* ---- plans ---------------------------------------------------------------------------------- */

/* A plan that runs on im2col + cuBLAS. */
static void cuda_conv_plan_gemm(cuda_conv_plan *p) {
    p->gemm = 1;
    p->chunk = p->shape.B;
    p->pad_copy = 0;
    p->ws_at = 0;
    p->ws[0] = p->ws[1] = 0;
    p->scratch = cuda_conv_gemm_scratch_bytes(&p->shape);
}

#ifdef DIFFTUNE_HAVE_CUDNN
/* bytes rounded up to 256, where the workspace after a padded copy may start */
static size_t cuda_conv_align(size_t bytes) {
    return (bytes + 255) & ~(size_t)255;
}

/* Sets the filter and convolution descriptors for plan p (padding, stride, math `math`). */
static int cuda_conv_set_filter(cuda_ctx *cx, cuda_conv_state *st, const cuda_conv_plan *p,
                                cudnnMathType_t math, const char *op) {
    const cuda_conv_shape *s = &p->shape;
    const int ph = p->pad_copy ? 0 : s->pad_t, pw = p->pad_copy ? 0 : s->pad_l;
    return cuda_conv_check_dnn(cx, cudnnSetFilter4dDescriptor(st->wdesc, CUDNN_DATA_FLOAT,
                                                              CUDNN_TENSOR_NCHW, s->OC, s->C,
                                                              s->KH, s->KW), op) ||
           /* PyTorch's conv2d is a cross-correlation; fp32 accumulation */
           cuda_conv_check_dnn(cx, cudnnSetConvolution2dDescriptor(st->cdesc, ph, pw, s->stride,
                                                                   s->stride, 1, 1,
                                                                   CUDNN_CROSS_CORRELATION,
                                                                   CUDNN_DATA_FLOAT), op) ||
           cuda_conv_check_dnn(cx, cudnnSetConvolutionMathType(st->cdesc, math), op);
}

/* Sets the tensor descriptors for n images of plan p (the input padded when p copies it). */
static int cuda_conv_set_tensors(cuda_ctx *cx, cuda_conv_state *st, const cuda_conv_plan *p,
                                 int n, const char *op) {
    const cuda_conv_shape *s = &p->shape;
    const int H = p->pad_copy ? s->H + s->pad_t + s->pad_b : s->H;
    const int W = p->pad_copy ? s->W + s->pad_l + s->pad_r : s->W;
    return cuda_conv_check_dnn(cx, cudnnSetTensor4dDescriptor(st->xdesc, CUDNN_TENSOR_NCHW,
                                                              CUDNN_DATA_FLOAT, n, s->C, H, W),
                               op) ||
           cuda_conv_check_dnn(cx, cudnnSetTensor4dDescriptor(st->ydesc, CUDNN_TENSOR_NCHW,
                                                              CUDNN_DATA_FLOAT, n, s->OC, s->Ho,
                                                              s->Wo), op);
}

/* Fills plan p (shape and precision set) for cuDNN within `budget` bytes of scratch, or turns
 * it into an im2col plan when cuDNN has no qualifying algorithm that fits. Returns 0, or -1
 * after recording a failure. */
static int cuda_conv_plan_dnn(cuda_ctx *cx, cuda_conv_state *st, cuda_conv_plan *p,
                              size_t budget, const char *op) {
    const cuda_conv_shape *s = &p->shape;
    p->pad_copy = s->pad_t != s->pad_b || s->pad_l != s->pad_r;
    const size_t Hin = p->pad_copy ? (size_t)s->H + s->pad_t + s->pad_b : (size_t)s->H;
    const size_t Win = p->pad_copy ? (size_t)s->W + s->pad_l + s->pad_r : (size_t)s->W;
    const size_t in_img = (size_t)s->C * Hin * Win, out_img = (size_t)s->OC * s->Ho * s->Wo;
    size_t chunk = (size_t)s->B;
    size_t cap = CUDA_CONV_MAX_ELEMS / (in_img > out_img ? in_img : out_img);
    if (p->pad_copy && CUDA_CONV_PAD_BUDGET / (in_img * sizeof(float)) < cap)
        cap = CUDA_CONV_PAD_BUDGET / (in_img * sizeof(float));
    if (chunk > cap) chunk = cap > 0 ? cap : 1;
    p->chunk = (int)chunk;
    p->ws_at = p->pad_copy ? cuda_conv_align(chunk * in_img * sizeof(float)) : 0;
    if (p->ws_at > budget) {
        cuda_conv_plan_gemm(p);
        return 0;
    }
    size_t max_ws = budget - p->ws_at;
    if (max_ws > CUDA_CONV_MAX_WORKSPACE) max_ws = CUDA_CONV_MAX_WORKSPACE;
    const cudnnMathType_t want = p->bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    const int sizes[2] = {p->chunk, s->B % p->chunk};
    p->ws[1] = 0;
    for (int j = 0; j < 2; j++) {
        if (sizes[j] == 0) {
            p->algo[1] = p->algo[0];
            p->math[1] = p->math[0];
            continue;
        }
        int n = 0, c = 0, h = 0, w = 0, considered = 0;
        if (cuda_conv_set_filter(cx, st, p, want, op) ||
            cuda_conv_set_tensors(cx, st, p, sizes[j], op) ||
            cuda_conv_check_dnn(cx, cudnnGetConvolution2dForwardOutputDim(st->cdesc, st->xdesc,
                                                                          st->wdesc, &n, &c, &h,
                                                                          &w), op))
            return -1;
        if (n != sizes[j] || c != s->OC || h != s->Ho || w != s->Wo) {
            char reason[200];
            snprintf(reason, sizeof reason, "cuDNN makes (%d, %d, %d, %d) of a convolution "
                     "expected to give (%d, %d, %d, %d)", n, c, h, w, sizes[j], s->OC, s->Ho,
                     s->Wo);
            return cuda_fail(cx, op, reason);
        }
        cudnnStatus_t rc = cuda_dnn_choose_forward(st->dnn, st->xdesc, st->wdesc, st->cdesc,
                                                   st->ydesc, p->bf16, max_ws,
                                                   &p->algo[j], &p->ws[j], &p->math[j],
                                                   &considered);
        if (rc == CUDNN_STATUS_NOT_SUPPORTED) {
            cuda_conv_plan_gemm(p);
            return 0;
        }
        if (cuda_conv_check_dnn(cx, rc, op)) return -1;
    }
    p->gemm = 0;
    p->scratch = p->ws_at + (p->ws[0] > p->ws[1] ? p->ws[0] : p->ws[1]);
    return 0;
}
#endif

/* The cached plan for shape s at precision bf16, made when missing within `budget` bytes of
 * scratch (CUDA_CONV_UNBOUNDED when answering scratch_bytes). NULL after a failure, including
 * a shape that cannot run within its budget. */
static const cuda_conv_plan *cuda_conv_plan_for(cuda_ctx *cx, cuda_conv_state *st,
                                                const cuda_conv_shape *s, int bf16, size_t budget,
                                                const char *op) {
    for (int i = 0; i < st->nplans; i++)
        if (st->plans[i].bf16 == bf16 && !memcmp(&st->plans[i].shape, s, sizeof *s))
            return &st->plans[i];
    int slot;
    if (st->nplans < CUDA_CONV_PLANS) {
        slot = st->nplans++;
    } else {
        slot = st->next;
        st->next = (st->next + 1) % CUDA_CONV_PLANS;
    }
    cuda_conv_plan *p = &st->plans[slot];
    memset(p, 0, sizeof *p);
    p->shape = *s;
    p->bf16 = bf16;
    int rc = 0;
#ifdef DIFFTUNE_HAVE_CUDNN
    if (st->dnn && !st->force_gemm) rc = cuda_conv_plan_dnn(cx, st, p, budget, op);
    else cuda_conv_plan_gemm(p);
#else
    cuda_conv_plan_gemm(p);
#endif
    if (!rc && p->scratch > budget) {
        char reason[240];
        snprintf(reason, sizeof reason, "%zu bytes of scratch needed for a batch of %d where %zu "
                 "were asked for (size the scratch with conv2d_scratch_bytes of this layer at "
                 "its largest batch)", p->scratch, s->B, budget);
        rc = cuda_fail(cx, op, reason);
    }
    if (rc) {
        memset(p, 0, sizeof *p);
        p->bf16 = -1; /* never matches a lookup */
        return NULL;
    }
    return p;
}

/* Fills the shape of a call and checks it; -1 after recording a failure. */
static int cuda_conv_shape_of(cuda_ctx *cx, cuda_conv_shape *s, int B, int C, int H, int W,
                              int OC, int KH, int KW, int stride, int pad_t, int pad_l, int pad_b,
                              int pad_r, const char *op) {
    memset(s, 0, sizeof *s); /* the plans compare shapes bytewise */
    s->B = B, s->C = C, s->H = H, s->W = W, s->OC = OC, s->KH = KH, s->KW = KW;
    s->stride = stride, s->pad_t = pad_t, s->pad_l = pad_l, s->pad_b = pad_b, s->pad_r = pad_r;
    if (stride >= 1 && KH >= 1 && KW >= 1) {
        s->Ho = (H + pad_t + pad_b - KH) / stride + 1;
        s->Wo = (W + pad_l + pad_r - KW) / stride + 1;
    }
    if (B < 1 || C < 1 || OC < 1 || H < 1 || W < 1 || stride < 1 || KH < 1 || KW < 1 ||
        pad_t < 0 || pad_l < 0 || pad_b < 0 || pad_r < 0 || H + pad_t + pad_b < KH ||
        W + pad_l + pad_r < KW) {
        char reason[200];
        snprintf(reason, sizeof reason, "bad shape: B %d, C %d, %dx%d, OC %d, kernel %dx%d, "
                 "stride %d, padding %d %d %d %d", B, C, H, W, OC, KH, KW, stride, pad_t, pad_l,
                 pad_b, pad_r);
        return cuda_fail(cx, op, reason);
    }
    return 0;
}

/* The promise slot of shape s's layer (s with B = 0), added when missing; NULL after a
 * failure. */
static cuda_conv_promise *cuda_conv_promise_of(cuda_ctx *cx, cuda_conv_state *st,
                                               const cuda_conv_shape *s, int add,
                                               const char *op) {
    cuda_conv_shape layer = *s;
    layer.B = 0;
    for (int i = 0; i < st->npromises; i++)
        if (!memcmp(&st->promises[i].layer, &layer, sizeof layer)) return &st->promises[i];
    if (!add) return NULL;
    if (st->npromises == st->promise_cap) {
        int cap = st->promise_cap ? 2 * st->promise_cap : 64;
        cuda_conv_promise *grown =
            (cuda_conv_promise *)realloc(st->promises, sizeof *grown * (size_t)cap);
        if (!grown) {
            cuda_fail(cx, op, "out of host memory");
            return NULL;
        }
        st->promises = grown;
        st->promise_cap = cap;
    }
    cuda_conv_promise *pr = &st->promises[st->npromises++];
    pr->layer = layer;
    pr->bytes = 0;
    return pr;
}

/* ---- the ops -------------------------------------------------------------------------------- */

/* The larger of what the fp32 and the bf16 plans of this shape need (0 after a failure). */
static size_t cuda_conv2d_scratch_bytes(dt_backend *be, int B, int C, int H, int W, int OC,
                                        int KH, int KW, int stride, int pad_t, int pad_l,
                                        int pad_b, int pad_r) {
    const char *op = "conv2d_scratch_bytes";
    cuda_ctx *cx = cuda_ctx_of(be);
    if (cx->failed) return 0;
    cuda_conv_shape s;
    if (B < 1) B = 1; /* an empty batch needs no more than one image */
    if (cuda_conv_shape_of(cx, &s, B, C, H, W, OC, KH, KW, stride, pad_t, pad_l, pad_b, pad_r, op))
        return 0;
    cuda_conv_state *st = cuda_conv_state_of(cx, op);
    if (!st) return 0;
    size_t need = 0;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        const cuda_conv_plan *p = cuda_conv_plan_for(cx, st, &s, bf16, CUDA_CONV_UNBOUNDED, op);
        if (!p) return 0;
        if (p->scratch > need) need = p->scratch;
    }
    cuda_conv_promise *pr = cuda_conv_promise_of(cx, st, &s, 1, op);
    if (!pr) return 0;
    if (need > pr->bytes) pr->bytes = need;
    return pr->bytes; /* a larger batch asked about earlier may need more: it keeps its answer */
}

/* out (B,OC,Ho,Wo) = conv2d(inp, w) + bias through the shape's plan (see the top of the file). */
static void cuda_conv2d_forward(dt_backend *be, float *out, const float *inp, const float *w,
                                const float *bias, void *scratch, int B, int C, int H, int W,
                                int OC, int KH, int KW, int stride, int pad_t, int pad_l,
                                int pad_b, int pad_r) {
    CUDA_OP_BEGIN(be, cx);
    const char *op = "conv2d_forward";
    if (B <= 0) return;
    cuda_conv_shape s;
    if (cuda_conv_shape_of(cx, &s, B, C, H, W, OC, KH, KW, stride, pad_t, pad_l, pad_b, pad_r, op))
        return;
    cuda_conv_state *st = cuda_conv_state_of(cx, op);
    if (!st) return;
    const int bf16 = be->precision == DT_PRECISION_BF16;
    /* A plan made here (a batch size never asked about) must fit what the layer was promised. */
    const cuda_conv_promise *pr = cuda_conv_promise_of(cx, st, &s, 0, op);
    const cuda_conv_plan *p = cuda_conv_plan_for(cx, st, &s, bf16, pr ? pr->bytes : 0, op);
    if (!p) return;
    if (p->scratch && !scratch) {
        cuda_fail(cx, op, "no scratch (conv2d_scratch_bytes asks for some for this shape)");
        return;
    }
    if (p->gemm) {
        cuda_conv_gemm_forward(cx, bf16, &s, out, inp, w, scratch);
    } else {
#ifdef DIFFTUNE_HAVE_CUDNN
        const size_t in_img = (size_t)C * H * W, out_img = (size_t)OC * s.Ho * s.Wo;
        const int Hp = H + pad_t + pad_b, Wp = W + pad_l + pad_r;
        static const float one = 1.0f, zero = 0.0f;
        for (int b0 = 0; b0 < B && !cx->failed; b0 += p->chunk) {
            const int n = B - b0 < p->chunk ? B - b0 : p->chunk, j = n == p->chunk ? 0 : 1;
            const float *x = inp + (size_t)b0 * in_img;
            if (p->pad_copy) {
                const size_t planes = (size_t)n * C, total = planes * Hp * Wp;
                cuda_conv_pad_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cx->stream>>>(
                    (float *)scratch, x, planes, H, W, Hp, Wp, pad_t, pad_l);
                if (cuda_check_launch(cx, op)) return;
                x = (const float *)scratch;
            }
            if (cuda_conv_set_filter(cx, st, p, p->math[j], op) ||
                cuda_conv_set_tensors(cx, st, p, n, op) ||
                cuda_conv_check_dnn(cx, cudnnConvolutionForward(
                                            st->dnn, &one, st->xdesc, x, st->wdesc, w, st->cdesc,
                                            p->algo[j], p->ws[j] ? (char *)scratch + p->ws_at
                                                                 : NULL, p->ws[j],
                                            &zero, st->ydesc, out + (size_t)b0 * out_img),
                                    "cudnnConvolutionForward"))
                return;
        }
#endif
    }
    if (bias && !cx->failed) {
        const size_t rows = (size_t)B * OC, plane = (size_t)s.Ho * s.Wo;
        size_t bx = (plane + CUDA_THREADS * 8 - 1) / (CUDA_THREADS * 8);
        dim3 grid((unsigned)(bx < 1 ? 1 : bx > 1024 ? 1024 : bx),
                  (unsigned)(rows < CUDA_GRID_Y_CAP ? rows : CUDA_GRID_Y_CAP));
        cuda_conv_bias_kernel<<<grid, CUDA_THREADS, 0, cx->stream>>>(out, bias, rows, OC, plane);
        cuda_check_launch(cx, op);
    }
}

/* Installs conv2d_scratch_bytes and conv2d_forward into `be`; called once by
 * dt_backend_cuda_create, touches no other table entries. */
void cuda_conv_install(dt_backend *be) {
    be->conv2d_scratch_bytes = cuda_conv2d_scratch_bytes;
    be->conv2d_forward = cuda_conv2d_forward;
}
