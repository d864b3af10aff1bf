/* classifier_layers.c — forward and backward passes of the fd_classifier CNN on the CPU
 * (classifier_net.h).
 *
 * Every image goes through the whole network on one OpenMP thread (convolutions as im2col +
 * sgemm, the fully connected layers as sgemv; OpenBLAS runs single-threaded inside a parallel
 * region), so a pass has no serial section and a training step is one parallel region with
 * one barrier: a busy machine stalls it at few synchronisation points. Weight gradients are
 * summed per fixed chunk of the batch and then over chunks in order, so a run is
 * bit-reproducible whatever the thread count.
 */
#include "classifier_net.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "rng.h"
#include "safetensors.h"

int clf_net_init(clf_net *net, int S, int C, int K) {
    memset(net, 0, sizeof *net);
    net->S = S;
    net->C = C;
    net->K = K;
    static const int channels[CLF_STAGES] = {32, 64, CLF_GAP_CHANNELS};
    size_t n = 0;
    for (int l = 0; l < CLF_STAGES; l++) {
        net->ic[l] = l ? channels[l - 1] : C;
        net->oc[l] = channels[l];
        net->hw[l] = S >> l;
        n += (size_t)net->oc[l] * net->ic[l] * 9 + net->oc[l];
    }
    n += (size_t)CLASSIFIER_FEATURES * CLF_GAP_CHANNELS + CLASSIFIER_FEATURES;
    n += (size_t)K * CLASSIFIER_FEATURES + K;
    net->num_params = n;
    net->params = calloc(n, sizeof *net->params);
    if (!net->params) return -1;
    float *p = net->params;
    for (int l = 0; l < CLF_STAGES; l++) {
        net->conv_w[l] = p;
        p += (size_t)net->oc[l] * net->ic[l] * 9;
        net->conv_b[l] = p;
        p += net->oc[l];
    }
    net->fc1_w = p;
    p += (size_t)CLASSIFIER_FEATURES * CLF_GAP_CHANNELS;
    net->fc1_b = p;
    p += CLASSIFIER_FEATURES;
    net->fc2_w = p;
    p += (size_t)K * CLASSIFIER_FEATURES;
    net->fc2_b = p;
    return 0;
}

void clf_net_free(clf_net *net) {
    free(net->params);
    net->params = NULL;
}

const char *clf_net_tensor_name(int i) {
    static const char *const names[CLF_NET_TENSORS] = {
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight",
        "conv3.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    return i >= 0 && i < CLF_NET_TENSORS ? names[i] : NULL;
}

int clf_net_tensor(const clf_net *net, int i, const char **name, int64_t shape[4], float **data) {
    *name = clf_net_tensor_name(i);
    if (i < 2 * CLF_STAGES) {
        const int l = i / 2;
        shape[0] = net->oc[l];
        if (i % 2) {
            *data = net->conv_b[l];
            return 1;
        }
        shape[1] = net->ic[l];
        shape[2] = shape[3] = 3;
        *data = net->conv_w[l];
        return 4;
    }
    const int fc2 = i >= 2 * CLF_STAGES + 2;
    shape[0] = fc2 ? net->K : CLASSIFIER_FEATURES;
    shape[1] = fc2 ? CLASSIFIER_FEATURES : CLF_GAP_CHANNELS;
    if (i % 2) {
        *data = fc2 ? net->fc2_b : net->fc1_b;
        return 1;
    }
    *data = fc2 ? net->fc2_w : net->fc1_w;
    return 2;
}

int clf_net_save(const clf_net *net, const char *path, const char *const *meta, char *err,
                 size_t errlen) {
    st_write_tensor t[CLF_NET_TENSORS];
    memset(t, 0, sizeof t);
    for (int i = 0; i < CLF_NET_TENSORS; i++) {
        float *data;
        t[i].ndim = clf_net_tensor(net, i, &t[i].name, t[i].shape, &data);
        t[i].dtype = ST_F32;
        t[i].data = data;
    }
    return safetensors_write(path, t, CLF_NET_TENSORS, meta, err, errlen);
}

void clf_net_init_weights(clf_net *net, uint64_t seed) {
    float *w[CLF_STAGES + 2];
    size_t count[CLF_STAGES + 2];
    int fan_in[CLF_STAGES + 2];
    for (int l = 0; l < CLF_STAGES; l++) {
        w[l] = net->conv_w[l];
        count[l] = (size_t)net->oc[l] * net->ic[l] * 9;
        fan_in[l] = net->ic[l] * 9;
    }
    w[CLF_STAGES] = net->fc1_w;
    count[CLF_STAGES] = (size_t)CLASSIFIER_FEATURES * CLF_GAP_CHANNELS;
    fan_in[CLF_STAGES] = CLF_GAP_CHANNELS;
    w[CLF_STAGES + 1] = net->fc2_w;
    count[CLF_STAGES + 1] = (size_t)net->K * CLASSIFIER_FEATURES;
    fan_in[CLF_STAGES + 1] = CLASSIFIER_FEATURES;
    memset(net->params, 0, net->num_params * sizeof *net->params);
    for (int t = 0; t < CLF_STAGES + 2; t++) {
        float sd = sqrtf(2.0f / (float)fan_in[t]);
        for (size_t e = 0; e < count[t]; e++)
            w[t][e] = sd * dt_philox_normal(seed, DT_STREAM_INIT + (uint64_t)t, e);
    }
}

int clf_work_init(clf_work *w, const clf_net *net, int cap, int backward) {
    memset(w, 0, sizeof *w);
    w->cap = cap;
    w->threads = omp_get_max_threads();
    w->backward = backward;
    const size_t S = (size_t)net->S, B = (size_t)cap, T = (size_t)w->threads;
    for (int l = 0; l < CLF_STAGES; l++) {
        size_t c = (size_t)net->ic[l] * 9 * net->hw[l] * net->hw[l];
        if (c > w->col_floats) w->col_floats = c;
    }
    int bad = 0;
#define CLF_ALLOC(ptr, count) bad |= !((ptr) = malloc((count) * sizeof(float)))
    CLF_ALLOC(w->x, B * net->C * S * S);
    for (int l = 0; l < CLF_STAGES; l++) {
        size_t side = (size_t)net->hw[l];
        CLF_ALLOC(w->act[l], B * net->oc[l] * side * side);
        if (l < CLF_STAGES - 1) CLF_ALLOC(w->pool[l], B * net->oc[l] * (side / 2) * (side / 2));
    }
    CLF_ALLOC(w->gap, B * CLF_GAP_CHANNELS);
    CLF_ALLOC(w->hid, B * CLASSIFIER_FEATURES);
    CLF_ALLOC(w->logits, B * net->K);
    CLF_ALLOC(w->col, T * w->col_floats);
    if (backward) {
        CLF_ALLOC(w->dcol, T * w->col_floats);
        CLF_ALLOC(w->dz, T * net->oc[0] * S * S);
        CLF_ALLOC(w->dpool, T * net->oc[0] * (S / 2) * (S / 2));
        CLF_ALLOC(w->dlogits, B * net->K);
        CLF_ALLOC(w->dhid, B * CLASSIFIER_FEATURES);
        CLF_ALLOC(w->dgap, B * CLF_GAP_CHANNELS);
        CLF_ALLOC(w->chunk_grad, (size_t)(cap < CLF_CHUNKS ? cap : CLF_CHUNKS) * net->num_params);
        CLF_ALLOC(w->grad, net->num_params);
    }
#undef CLF_ALLOC
    if (bad) {
        clf_work_free(w);
        return -1;
    }
    return 0;
}

void clf_work_free(clf_work *w) {
    float **all[] = {&w->x, &w->act[0], &w->act[1], &w->act[2], &w->pool[0], &w->pool[1],
                     &w->gap, &w->hid, &w->logits, &w->col, &w->dcol, &w->dz, &w->dpool,
                     &w->dlogits, &w->dhid, &w->dgap, &w->chunk_grad, &w->grad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

/* ---- per-image operators --------------------------------------------------------------------- */

/* in (ic, H, H) to col (ic * 9, H * H) for a 3x3 window with zero padding 1. */
static void clf_im2col(const float *in, int ic, int H, float *col) {
    const int HW = H * H;
    for (int c = 0; c < ic; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                float *dst = col + (size_t)(c * 9 + ky * 3 + kx) * HW;
                for (int y = 0; y < H; y++) {
                    int iy = y + ky - 1;
                    float *d = dst + y * H;
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, sizeof *d * (size_t)H);
                        continue;
                    }
                    const float *src = in + ((size_t)c * H + iy) * H;
                    for (int x = 0; x < H; x++) {
                        int ix = x + kx - 1;
                        d[x] = ix >= 0 && ix < H ? src[ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of clf_im2col: out (ic, H, H) = the sum of every col entry that read it. */
static void clf_col2im(const float *col, int ic, int H, float *out) {
    const int HW = H * H;
    memset(out, 0, sizeof *out * (size_t)ic * HW);
    for (int c = 0; c < ic; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const float *src = col + (size_t)(c * 9 + ky * 3 + kx) * HW;
                for (int y = 0; y < H; y++) {
                    int iy = y + ky - 1;
                    if (iy < 0 || iy >= H) continue;
                    float *d = out + ((size_t)c * H + iy) * H;
                    const float *s = src + y * H;
                    for (int x = 0; x < H; x++) {
                        int ix = x + kx - 1;
                        if (ix >= 0 && ix < H) d[ix] += s[x];
                    }
                }
            }
}

/* 2x2 average pool of in (C, H, H) into out (C, H/2, H/2). */
static void clf_avgpool2(const float *in, int C, int H, float *out) {
    const int h = H / 2;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < h; y++) {
            const float *r0 = in + ((size_t)c * H + 2 * y) * H, *r1 = r0 + H;
            float *d = out + ((size_t)c * h + y) * h;
            for (int x = 0; x < h; x++)
                d[x] = 0.25f * (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]);
        }
}

/* Stage l of one image: act = relu(W im2col(in) + b), the col matrix in col. */
static void clf_conv_forward(const clf_net *net, int l, const float *in, float *act, float *col) {
    const int H = net->hw[l], HW = H * H, oc = net->oc[l], kdim = net->ic[l] * 9;
    clf_im2col(in, net->ic[l], H, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, HW, kdim, 1.0f, net->conv_w[l],
                kdim, col, HW, 0.0f, act, HW);
    for (int c = 0; c < oc; c++) {
        float b = net->conv_b[l][c], *a = act + (size_t)c * HW;
        for (int i = 0; i < HW; i++) {
            float v = a[i] + b;
            a[i] = v > 0.0f ? v : 0.0f;
        }
    }
}

/* ---- passes ---------------------------------------------------------------------------------- */

static size_t clf_image_floats(const clf_net *net, int l, int pooled) {
    size_t side = (size_t)(pooled ? net->hw[l] / 2 : net->hw[l]);
    return (size_t)net->oc[l] * side * side;
}

/* Image b of w->x through the whole network to its logits, with col as im2col scratch. */
static void clf_image_forward(const clf_net *net, clf_work *w, int b, float *col) {
    const int F = CLASSIFIER_FEATURES, G = CLF_GAP_CHANNELS, K = net->K;
    const float *in = w->x + (size_t)b * net->C * net->S * net->S;
    float *gap = w->gap + (size_t)b * G, *hid = w->hid + (size_t)b * F;
    for (int l = 0; l < CLF_STAGES; l++) {
        float *act = w->act[l] + (size_t)b * clf_image_floats(net, l, 0);
        clf_conv_forward(net, l, in, act, col);
        if (l < CLF_STAGES - 1) {
            float *pooled = w->pool[l] + (size_t)b * clf_image_floats(net, l, 1);
            clf_avgpool2(act, net->oc[l], net->hw[l], pooled);
            in = pooled;
        } else {
            const int HW = net->hw[l] * net->hw[l];
            for (int c = 0; c < G; c++) {
                float s = 0.0f;
                for (int i = 0; i < HW; i++) s += act[(size_t)c * HW + i];
                gap[c] = s / (float)HW;
            }
        }
    }
    memcpy(hid, net->fc1_b, sizeof *hid * F);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, F, G, 1.0f, net->fc1_w, G, gap, 1, 1.0f, hid, 1);
    for (int j = 0; j < F; j++) hid[j] = hid[j] > 0.0f ? hid[j] : 0.0f;
    float *logits = w->logits + (size_t)b * K;
    memcpy(logits, net->fc2_b, sizeof *logits * K);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, K, F, 1.0f, net->fc2_w, F, hid, 1, 1.0f, logits, 1);
}

void clf_forward(const clf_net *net, clf_work *w, int n) {
#pragma omp parallel for schedule(static) num_threads(w->threads)
    for (int b = 0; b < n; b++)
        clf_image_forward(net, w, b, w->col + (size_t)omp_get_thread_num() * w->col_floats);
}

/* Cross-entropy of image b's logits against label; writes its gradient, divided by n (the
 * batch mean), into w->dlogits when there is one; *hit = argmax == label. */
static double clf_image_loss(const clf_net *net, clf_work *w, int b, int32_t label, int n,
                             int *hit) {
    const int K = net->K;
    const float *z = w->logits + (size_t)b * K;
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best]) best = k;
    *hit = best == label;
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp((double)z[k] - z[best]);
    if (w->dlogits) {
        float *d = w->dlogits + (size_t)b * K;
        for (int k = 0; k < K; k++)
            d[k] = (float)((exp((double)z[k] - z[best]) / sum - (k == label)) / n);
    }
    return log(sum) - ((double)z[label] - z[best]);
}

double clf_loss(const clf_net *net, clf_work *w, int n, const int32_t *labels, int *correct) {
    double total = 0.0;
    int hits = 0;
    for (int b = 0; b < n; b++) {
        int hit;
        total += clf_image_loss(net, w, b, labels[b], n, &hit);
        hits += hit;
    }
    if (correct) *correct = hits;
    return total / n;
}

/* Backward of image b, from its dlogits to every weight gradient, accumulated into g (laid
 * out as params). */
static void clf_image_backward(const clf_net *net, clf_work *w, int b, int tid, float *g) {
    const int F = CLASSIFIER_FEATURES, G = CLF_GAP_CHANNELS, K = net->K;
    float *col = w->col + (size_t)tid * w->col_floats;
    float *dcol = w->dcol + (size_t)tid * w->col_floats;
    float *dz = w->dz + (size_t)tid * net->oc[0] * net->S * net->S;
    float *dpool = w->dpool + (size_t)tid * net->oc[0] * (net->S / 2) * (net->S / 2);
    const size_t img = (size_t)net->C * net->S * net->S;
    /* The two fully connected layers. */
    const float *dlogits = w->dlogits + (size_t)b * K, *hid = w->hid + (size_t)b * F;
    const float *gap = w->gap + (size_t)b * G;
    float *dhid = w->dhid + (size_t)b * F, *dgap = w->dgap + (size_t)b * G;
    cblas_sger(CblasRowMajor, K, F, 1.0f, dlogits, 1, hid, 1, g + (net->fc2_w - net->params), F);
    float *gb2 = g + (net->fc2_b - net->params);
    for (int k = 0; k < K; k++) gb2[k] += dlogits[k];
    cblas_sgemv(CblasRowMajor, CblasTrans, K, F, 1.0f, net->fc2_w, F, dlogits, 1, 0.0f, dhid, 1);
    for (int j = 0; j < F; j++)
        if (hid[j] <= 0.0f) dhid[j] = 0.0f;
    cblas_sger(CblasRowMajor, F, G, 1.0f, dhid, 1, gap, 1, g + (net->fc1_w - net->params), G);
    float *gb1 = g + (net->fc1_b - net->params);
    for (int j = 0; j < F; j++) gb1[j] += dhid[j];
    cblas_sgemv(CblasRowMajor, CblasTrans, F, G, 1.0f, net->fc1_w, G, dhid, 1, 0.0f, dgap, 1);
    /* The global average spreads dgap evenly; ReLU lets it through where the unit was on. */
    {
        const int l = CLF_STAGES - 1, HW = net->hw[l] * net->hw[l];
        const float *act = w->act[l] + (size_t)b * clf_image_floats(net, l, 0);
        for (int c = 0; c < net->oc[l]; c++)
            for (int i = 0; i < HW; i++)
                dz[(size_t)c * HW + i] = act[(size_t)c * HW + i] > 0.0f ? dgap[c] / (float)HW : 0.0f;
    }
    for (int l = CLF_STAGES - 1; l >= 0; l--) {
        const int H = net->hw[l], HW = H * H, oc = net->oc[l], ic = net->ic[l], kdim = ic * 9;
        const float *in = l ? w->pool[l - 1] + (size_t)b * clf_image_floats(net, l - 1, 1)
                            : w->x + (size_t)b * img;
        float *gw = g + (net->conv_w[l] - net->params), *gb = g + (net->conv_b[l] - net->params);
        clf_im2col(in, ic, H, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, oc, kdim, HW, 1.0f, dz, HW, col, HW,
                    1.0f, gw, kdim);
        for (int c = 0; c < oc; c++) {
            float s = 0.0f;
            for (int i = 0; i < HW; i++) s += dz[(size_t)c * HW + i];
            gb[c] += s;
        }
        if (l == 0) break; /* no gradient for the image itself */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kdim, HW, oc, 1.0f, net->conv_w[l],
                    kdim, dz, HW, 0.0f, dcol, HW);
        clf_col2im(dcol, ic, H, dpool);
        /* Through the previous stage's 2x2 average pool and ReLU. */
        const int Hp = net->hw[l - 1];
        const float *act = w->act[l - 1] + (size_t)b * clf_image_floats(net, l - 1, 0);
        for (int c = 0; c < ic; c++)
            for (int y = 0; y < Hp; y++)
                for (int x = 0; x < Hp; x++) {
                    size_t i = ((size_t)c * Hp + y) * Hp + x;
                    dz[i] = act[i] > 0.0f ? 0.25f * dpool[((size_t)c * H + y / 2) * H + x / 2]
                                          : 0.0f;
                }
    }
}

double clf_step(const clf_net *net, clf_work *w, int n, const int32_t *labels, int *correct) {
    /* Each image's forward pass, loss and backward pass depend on that image alone, so chunk c
     * of the batch runs them all and sums its images' gradients into its own slot; then every
     * parameter sums the slots in chunk order. One parallel region, one barrier per step. */
    const int chunks = n < CLF_CHUNKS ? n : CLF_CHUNKS;
    const size_t P = net->num_params;
#pragma omp parallel num_threads(w->threads)
    {
        const int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < chunks; c++) {
            float *gc = w->chunk_grad + (size_t)c * P;
            memset(gc, 0, P * sizeof *gc);
            double loss = 0.0;
            int hits = 0;
            for (int b = (int)((int64_t)c * n / chunks); b < (int)((int64_t)(c + 1) * n / chunks);
                 b++) {
                int hit;
                clf_image_forward(net, w, b, w->col + (size_t)tid * w->col_floats);
                loss += clf_image_loss(net, w, b, labels[b], n, &hit);
                hits += hit;
                clf_image_backward(net, w, b, tid, gc);
            }
            w->chunk_loss[c] = loss;
            w->chunk_hits[c] = hits;
        }
#pragma omp for schedule(static)
        for (size_t i = 0; i < P; i++) {
            float s = 0.0f;
            for (int c = 0; c < chunks; c++) s += w->chunk_grad[(size_t)c * P + i];
            w->grad[i] = s;
        }
    }
    double loss = 0.0;
    int hits = 0;
    for (int c = 0; c < chunks; c++) {
        loss += w->chunk_loss[c];
        hits += w->chunk_hits[c];
    }
    if (correct) *correct = hits;
    return loss / n;
}
