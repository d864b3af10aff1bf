/* fid.h — Gaussian feature statistics and the Fréchet distance between them.
 *
 * FID is this distance over Inception-v3 pool features; the same code serves any feature
 * (tests use down-sampled pixels). The matrix square root goes through symmetric
 * eigendecompositions (LAPACK dsyevd): tr sqrt(S1 S2) = tr sqrt(A S2 A) with A = S1^(1/2),
 * and A S2 A is symmetric positive semi-definite, so no complex arithmetic is needed.
 */
#ifndef DT_FID_H
#define DT_FID_H

#include <stddef.h>

typedef struct {
    int dim;
    long count;    /* samples the statistics were computed from */
    double *mu;    /* (dim) */
    double *sigma; /* (dim, dim) unbiased covariance */
} dt_gauss_stats;

/* Mean and covariance of n feature rows (n, dim) of floats; n >= 2. Returns 0 or -1 (memory). */
int fid_stats_compute(dt_gauss_stats *s, const float *features, long n, int dim);
void fid_stats_free(dt_gauss_stats *s);
/* ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2). Returns the distance (>= 0), or a
 * negative value when the eigensolver fails or dims differ. */
double fid_frechet_distance(const dt_gauss_stats *a, const dt_gauss_stats *b);

#endif
