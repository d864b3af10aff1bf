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
    double *sigma_sqrt; /* (dim, dim) symmetric square root of sigma once fid_stats_sqrt ran,
                         * else NULL; a reference set keeps it across evaluations */
} dt_gauss_stats;

/* Mean and covariance of n feature rows (n, dim) of floats; n >= 2. Returns 0 or -1 (memory). */
int fid_stats_compute(dt_gauss_stats *s, const float *features, long n, int dim);
void fid_stats_free(dt_gauss_stats *s);

/* Running sums for the statistics of rows fed in chunks, so that a large evaluation never holds
 * all its features. Sums are taken of x - shift, with shift the first row fed, so the covariance
 * does not lose digits to a large mean; a chunk becomes doubles and one dsyrk. */
typedef struct {
    int dim, chunk;
    long count;     /* rows fed so far */
    double *shift;  /* (dim) the first row */
    double *sum;    /* (dim) sum of x - shift */
    double *gram;   /* (dim, dim) upper triangle of sum (x - shift)(x - shift)^T */
    double *rows;   /* (chunk, dim) one chunk in double */
} fid_accum;

/* Allocates an empty accumulator for rows of width dim, fed up to chunk rows at a time (larger
 * feeds are split). Returns 0 or -1 (memory). */
int fid_accum_init(fid_accum *a, int dim, int chunk);
/* Forgets every row fed (keeps the memory). */
void fid_accum_reset(fid_accum *a);
/* Adds n rows (n, dim). */
void fid_accum_add(fid_accum *a, const float *rows, long n);
/* The statistics of everything fed so far into *s (allocated; release with fid_stats_free).
 * Needs count >= 2. Returns 0 or -1 (too few rows, memory). */
int fid_accum_stats(const fid_accum *a, dt_gauss_stats *s);
/* Releases a's memory; safe on a zeroed accumulator. */
void fid_accum_free(fid_accum *a);
/* Computes s->sigma_sqrt (eigendecomposition; the expensive half of a distance) when it is not
 * there yet. Returns 0, or -1 (eigensolver failure, memory). */
int fid_stats_sqrt(dt_gauss_stats *s);
/* ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), with tr sqrt(S1 S2) as the sum of the
 * square roots of the eigenvalues of A S A, A the square root of one covariance (b's when it has
 * sigma_sqrt, else a's, computed and dropped) and S the other one: A S A is symmetric positive
 * semi-definite, so singular covariances (fewer samples than features) are fine. Returns the
 * distance (>= 0), or a negative value when the eigensolver fails or dims differ. */
double fid_frechet_distance(const dt_gauss_stats *a, const dt_gauss_stats *b);

#endif
