/* fid.c — feature statistics and the Fréchet distance (LAPACKE). */
#include "fid.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int fid_stats_compute(dt_gauss_stats *s, const float *x, long n, int dim) {
    memset(s, 0, sizeof *s);
    if (n < 2 || dim < 1) return -1;
    s->dim = dim;
    s->count = n;
    s->mu = calloc((size_t)dim, sizeof(double));
    s->sigma = calloc((size_t)dim * dim, sizeof(double));
    double *centred = malloc(sizeof(double) * dim);
    if (!s->mu || !s->sigma || !centred) {
        free(centred);
        fid_stats_free(s);
        return -1;
    }
    for (long i = 0; i < n; i++)
        for (int d = 0; d < dim; d++) s->mu[d] += x[i * dim + d];
    for (int d = 0; d < dim; d++) s->mu[d] /= (double)n;
    for (long i = 0; i < n; i++) {
        for (int d = 0; d < dim; d++) centred[d] = x[i * dim + d] - s->mu[d];
        for (int r = 0; r < dim; r++)
            for (int c = r; c < dim; c++) s->sigma[(size_t)r * dim + c] += centred[r] * centred[c];
    }
    for (int r = 0; r < dim; r++)
        for (int c = r; c < dim; c++) {
            double v = s->sigma[(size_t)r * dim + c] / (double)(n - 1);
            s->sigma[(size_t)r * dim + c] = s->sigma[(size_t)c * dim + r] = v;
        }
    free(centred);
    return 0;
}

void fid_stats_free(dt_gauss_stats *s) {
    free(s->mu);
    free(s->sigma);
    memset(s, 0, sizeof *s);
}

/* Symmetric square root of a PSD matrix (dim, dim) in place; negative eigenvalues (round-off)
 * are clamped to zero. Returns 0 or the LAPACK error. */
static int fid_sqrtm_psd(double *m, int dim, double *evals, double *tmp) {
    int info = (int)LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', dim, m, dim, evals);
    if (info) return info;
    /* m now holds eigenvectors as columns: sqrt = V diag(sqrt(l)) V^T */
    for (int r = 0; r < dim; r++)
        for (int c = 0; c < dim; c++) tmp[(size_t)r * dim + c] = m[(size_t)r * dim + c] * sqrt(fmax(evals[c], 0.0));
    double *out = evals + dim; /* caller gave room for dim + dim*dim */
    for (int r = 0; r < dim; r++)
        for (int c = 0; c < dim; c++) {
            double acc = 0.0;
            for (int k = 0; k < dim; k++) acc += tmp[(size_t)r * dim + k] * m[(size_t)c * dim + k];
            out[(size_t)r * dim + c] = acc;
        }
    memcpy(m, out, sizeof(double) * dim * dim);
    return 0;
}

double fid_frechet_distance(const dt_gauss_stats *a, const dt_gauss_stats *b) {
    if (a->dim != b->dim) return -1.0;
    const int d = a->dim;
    const size_t dd = (size_t)d * d;
    double *s1h = malloc(sizeof(double) * dd), *tmp = malloc(sizeof(double) * dd);
    double *m = malloc(sizeof(double) * dd), *ev = malloc(sizeof(double) * (d + dd));
    double result = -1.0;
    if (!s1h || !tmp || !m || !ev) goto done;
    memcpy(s1h, a->sigma, sizeof(double) * dd);
    if (fid_sqrtm_psd(s1h, d, ev, tmp)) goto done;
    /* m = A S2 A, symmetric PSD */
    for (int r = 0; r < d; r++)
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int k = 0; k < d; k++) acc += s1h[(size_t)r * d + k] * b->sigma[(size_t)k * d + c];
            tmp[(size_t)r * d + c] = acc;
        }
    for (int r = 0; r < d; r++)
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int k = 0; k < d; k++) acc += tmp[(size_t)r * d + k] * s1h[(size_t)k * d + c];
            m[(size_t)r * d + c] = acc;
        }
    for (int r = 0; r < d; r++) /* symmetrise away round-off */
        for (int c = r + 1; c < d; c++) {
            double v = 0.5 * (m[(size_t)r * d + c] + m[(size_t)c * d + r]);
            m[(size_t)r * d + c] = m[(size_t)c * d + r] = v;
        }
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', d, m, d, ev)) goto done;
    double tr_sqrt = 0.0, tr1 = 0.0, tr2 = 0.0, diff = 0.0;
    for (int k = 0; k < d; k++) {
        tr_sqrt += sqrt(fmax(ev[k], 0.0));
        tr1 += a->sigma[(size_t)k * d + k];
        tr2 += b->sigma[(size_t)k * d + k];
        double dm = a->mu[k] - b->mu[k];
        diff += dm * dm;
    }
    result = fmax(0.0, diff + tr1 + tr2 - 2.0 * tr_sqrt);
done:
    free(s1h);
    free(tmp);
    free(m);
    free(ev);
    return result;
}
