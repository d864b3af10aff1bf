/* cuda_inception.h — the FID Inception-v3 forward pass on a CUDA device with cuDNN, callable
 * from C.
 *
 * Built only when CMake finds cuDNN next to the CUDA toolkit (DIFFTUNE_HAVE_CUDNN). The network
 * is described by its host owner, engine/inception.c, which keeps the CPU reference: the
 * convolutions with BatchNorm already folded in (weight and bias, uploaded once), in state-dict
 * order, and the sequence of blocks that consume them. The forward pass is the CPU's, operation
 * for operation: bilinear resize to 299x299 of the engine's [-1, 1] pixels through [0, 1] and
 * 2p - 1 (inception_op_resize), convolutions + bias + ReLU in NCHW fp32 with FMA math only (no
 * TF32), 3x3 pools (average pools count only pixels inside the image), each block's branches
 * written into their channel slices of the block output (torchvision's concatenation order), and
 * the global average pool. Images run in chunks of up to CUDA_INCEPTION_MAX_CHUNK, on buffers
 * allocated for the largest chunk seen and reused.
 *
 * Errors are sticky, as in the CUDA backend: the first failure (a CUDA or cuDNN status, a bad
 * description, out of device memory) is recorded with what failed, every later call returns -1,
 * and cuda_inception_error says why. Nothing exits.
 *
 * Numerics: every convolution algorithm is one that cuDNN's heuristic (cudnnGetConvolution-
 * ForwardAlgorithm_v7) lists for FMA math as deterministic, FFT and Winograd excluded (they
 * transform the operands and round differently from a direct sum), so features agree with the
 * CPU to rounding (~1e-6 of their scale expected) and repeat bit for bit for the same chunk
 * sizes. The algorithm may differ between chunk sizes, so an image's features may differ at the
 * rounding level with the batch it is computed in.
 */
#ifndef DT_CUDA_INCEPTION_H
#define DT_CUDA_INCEPTION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_INCEPTION_SIZE 299      /* every image is resized to this square first */
#define CUDA_INCEPTION_MAX_CHUNK 64  /* images per pass: ~14 MiB of activations each */

typedef struct cuda_inception cuda_inception;

/* The blocks of the network, each consuming the next convolutions in the order they were added:
 * the stem (Conv2d_1a_3x3 .. Conv2d_4a_3x3, 5 convolutions, with the two 3x3 stride-2 max pools)
 * and torchvision's / pytorch-fid's mixed blocks. */
typedef enum {
    CUDA_INCEPTION_STEM = 0, /* 5 convolutions */
    CUDA_INCEPTION_A,        /* FIDInceptionA: 7 convolutions, 3x3 average pool */
    CUDA_INCEPTION_B,        /* InceptionB: 4 convolutions, 3x3 stride-2 max pool */
    CUDA_INCEPTION_C,        /* FIDInceptionC: 10 convolutions, 3x3 average pool */
    CUDA_INCEPTION_D,        /* InceptionD: 6 convolutions, 3x3 stride-2 max pool */
    CUDA_INCEPTION_E1,       /* FIDInceptionE_1: 9 convolutions, 3x3 average pool */
    CUDA_INCEPTION_E2        /* FIDInceptionE_2: 9 convolutions, 3x3 stride-1 max pool */
} cuda_inception_block;

/* One convolution with its BatchNorm folded in: out = relu(weight * x + bias). The arrays are
 * host memory, copied by cuda_inception_add_conv; the caller keeps ownership. */
typedef struct {
    int cin, cout, kh, kw, stride, ph, pw;
    const float *weight; /* (cout, cin, kh, kw) */
    const float *bias;   /* (cout) */
} cuda_inception_conv_desc;

/* Creates an empty network on CUDA device `device`: a stream and a cuDNN handle of its own.
 * Returns NULL with one line in err when there is no driver or device, the index is out of
 * range, the GPU is older than compute capability 8.0, or cuDNN cannot start. Release with
 * cuda_inception_free. */
cuda_inception *cuda_inception_create(int device, char *err, size_t errlen);

/* Appends a convolution (state-dict order) and uploads its weight and bias. Returns 0, or -1
 * (bad shape, out of device memory; see cuda_inception_error). */
int cuda_inception_add_conv(cuda_inception *g, const cuda_inception_conv_desc *c);

/* Appends a block; blocks consume the convolutions in order, the stem first. Returns 0 or -1. */
int cuda_inception_add_block(cuda_inception *g, cuda_inception_block kind);

/* Ends the description: checks that the blocks use every convolution exactly once, walks the
 * shapes of a 299x299 input and sizes the buffers. *out_channels receives the feature width
 * (2048 for the FID network). Returns 0, or -1 (see cuda_inception_error). */
int cuda_inception_finish(cuda_inception *g, int *out_channels);

/* Features (n, out_channels) into host memory of n host images (n, C, H, W) in the engine's
 * [-1, 1] convention, C = 1 (replicated to three channels) or 3, H, W >= 1. Needs a finished
 * network; not reentrant on one network. Waits for the device before returning. Returns 0, or
 * -1 (see cuda_inception_error; the network is unusable from then on). */
int cuda_inception_features(cuda_inception *g, const float *images, int n, int C, int H, int W,
                            float *features);

/* The first failure ("GPU Inception error in <op> on cuda:N: <reason>"), or "" when none. */
const char *cuda_inception_error(const cuda_inception *g);

/* Releases g and everything it allocated on the device; NULL is allowed. */
void cuda_inception_free(cuda_inception *g);

#ifdef __cplusplus
}
#endif

#endif
