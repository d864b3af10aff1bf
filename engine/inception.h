/* inception.h — the FID Inception-v3 network (pool3, 2048 features) as a CPU forward pass.
 *
 * The network is the TensorFlow 2015-12-05 Inception graph that FID is defined on, as ported by
 * pytorch-fid (src/pytorch_fid/inception.py: fid_inception_v3() with FIDInceptionA/C/E_1/E_2,
 * InceptionV3(resize_input=True, normalize_input=True), output block 3). Weights are pytorch-fid's
 * state dict (pt_inception-2015-12-05-6726825d.pth) converted to safetensors with the same tensor
 * names; BatchNorm (eps 0.001) is folded into each convolution when the file is loaded.
 *
 * Determinism: every image is computed on its own, by one thread, with the same sequence of
 * operations and every sgemm single-threaded (run inside an active OpenMP team, where the
 * OpenMP build of OpenBLAS that CMake selects does not split it), so an image's features are
 * bit-identical whatever n, the chunking or the thread count (tests/test_inception.c checks all
 * three). Across BLAS builds and CPUs they differ at the rounding level (float reassociation in
 * sgemm); with a pthread OpenBLAS, sgemm may split itself and results may differ by ~1e-7.
 */
#ifndef DT_INCEPTION_H
#define DT_INCEPTION_H

#include <stddef.h>
#include <stdint.h>

#define INCEPTION_FEATURES 2048 /* pool3 width */
#define INCEPTION_SIZE 299      /* every input is resized to this square before the network */

typedef struct dt_inception dt_inception;

/* Loads pytorch-fid's FID Inception weights from a safetensors file (F32, F16, BF16 or F64; fc.*
 * and num_batches_tracked entries are not needed and ignored) and folds BatchNorm into the
 * convolutions. On success *out is a network the caller releases with inception_free. Returns 0,
 * or -1 with a message naming the missing or mis-shaped tensor and the shape expected. */
int inception_load(dt_inception **out, const char *safetensors_path, char *err, size_t errlen);

/* Pool3 features (n, 2048) of n images (n, C, H, W) in the engine's convention, values in
 * [-1, 1], C = 3 or C = 1 (replicated to three channels), any H, W >= 1. Pixels go to [0, 1] as
 * (x + 1) / 2, then exactly pytorch-fid's InceptionV3.forward: bilinear resize to 299x299
 * (align_corners=False), 2x - 1, the network, the global average pool. Images run in parallel,
 * one per OpenMP thread (threads beyond n stay idle), on per-thread scratch (~17 MiB each)
 * allocated once per net and grown only when more threads appear; not reentrant on one net.
 * After inception_use_device("cuda:N") the same pass runs on that GPU instead, in chunks.
 * Returns 0, or -1 with a message (bad shape, out of memory, a failed GPU). */
int inception_features(dt_inception *net, const float *images, int n, int C, int H, int W,
                       float *features, char *err, size_t errlen);

/* Chooses where inception_features runs. "cpu" (the default after inception_load) is the pass
 * above. "cuda:N" builds the same network on CUDA device N with cuDNN (kernels/cuda/
 * cuda_inception.h: fp32 with FMA math only, no TF32) from the weights already folded here,
 * uploaded once; before returning it computes one test image on both and keeps the GPU only if
 * the features agree to INCEPTION_GPU_TOL of their scale. GPU features match the CPU's to
 * rounding (~1e-6 expected) and repeat bit for bit for the same n, but are not bit-identical to
 * them nor across batch sizes (cuDNN's algorithm depends on the chunk). Returns 0, or -1 with a
 * message (unknown device, a build without the CUDA backend or cuDNN, no such device, out of
 * device memory, the test image disagreeing), the net then staying on the CPU. Not thread-safe
 * with inception_features on the same net. */
int inception_use_device(dt_inception *net, const char *device, char *err, size_t errlen);

/* Normalised max error (max |gpu - cpu| / max |cpu|) inception_use_device accepts on its test
 * image. */
#define INCEPTION_GPU_TOL 1e-4

/* "cpu", or "cuda:N" after a successful inception_use_device. If a GPU call of
 * inception_features fails, that call returns -1 and the net goes back to "cpu". */
const char *inception_device(const dt_inception *net);

/* Multiply-add FLOPs (2 per multiply-add) of the convolutions for one image at 299x299, counted
 * from the layer table; pools, resize and bias/ReLU are left out. */
double inception_forward_flops(const dt_inception *net);

/* Releases net and its scratch; NULL is allowed. */
void inception_free(dt_inception *net);

/* Writes a complete FID Inception state dict (every name and shape inception_load reads, plus
 * fc.weight (1008, 2048) and fc.bias (1008)) of F32 random values for tests and benchmarks:
 * He-scaled normal conv weights, BatchNorm weight in [0.8, 1.2], bias and running_mean ~ 0.1 N(0,1),
 * running_var in [0.5, 1.5], so activations stay finite and non-trivial through all 94 layers.
 * A pure function of seed. Returns 0, or -1 with a message. */
int inception_write_random_weights(const char *path, uint64_t seed, char *err, size_t errlen);

#endif
