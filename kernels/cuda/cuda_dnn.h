/* cuda_dnn.h — cuDNN helpers shared by the CUDA backend's convolution (cuda_conv.cu) and the GPU
 * FID Inception (cuda_inception*.cu). Built only with cuDNN (DIFFTUNE_HAVE_CUDNN). */
#ifndef DT_CUDA_DNN_H
#define DT_CUDA_DNN_H

#include <cudnn.h>
#include <stddef.h>

/* Writes "cuDNN <status name>[: <cuDNN's last error message>]" into buf (n bytes). */
void cuda_dnn_status_text(cudnnStatus_t s, char *buf, size_t n);

/* Chooses a forward algorithm for the convolution the four descriptors describe: the first in
 * cuDNN's heuristic order (cudnnGetConvolutionForwardAlgorithm_v7) that succeeds, is
 * deterministic, does not transform the operands (no FFT, no Winograd: they round differently
 * from a direct sum), needs at most max_ws bytes of workspace, and runs in FMA math (no TF32)
 * unless allow_tensor_ops is set. The heuristic answers for the math type set on `conv`; the
 * choice may leave another one set, so the caller sets the returned *math on `conv` before
 * running the algorithm. Returns
 * CUDNN_STATUS_SUCCESS with *algo, *ws and *math; CUDNN_STATUS_NOT_SUPPORTED when no algorithm
 * qualifies (*considered says how many cuDNN listed); or the status of the call that failed. */
cudnnStatus_t cuda_dnn_choose_forward(cudnnHandle_t dnn, cudnnTensorDescriptor_t x,
                                      cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                                      cudnnTensorDescriptor_t y, int allow_tensor_ops,
                                      size_t max_ws, cudnnConvolutionFwdAlgo_t *algo, size_t *ws,
                                      cudnnMathType_t *math, int *considered);

#endif
