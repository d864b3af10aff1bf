/* cuda_dnn.cu — cuDNN status text and the forward-algorithm choice shared by the backend's
 * convolution and the GPU FID Inception (contract in cuda_dnn.h). */
#include <stdio.h>

#include "cuda_dnn.h"

void cuda_dnn_status_text(cudnnStatus_t s, char *buf, size_t n) {
    char last[256] = "";
#if CUDNN_MAJOR >= 9
    cudnnGetLastErrorString(last, sizeof last); /* the detail behind the status, if any */
#endif
    snprintf(buf, n, "cuDNN %s%s%s", cudnnGetErrorString(s), last[0] ? ": " : "", last);
}

cudnnStatus_t cuda_dnn_choose_forward(cudnnHandle_t dnn, cudnnTensorDescriptor_t x,
                                      cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                                      cudnnTensorDescriptor_t y, int allow_tensor_ops,
                                      size_t max_ws, cudnnConvolutionFwdAlgo_t *algo, size_t *ws,
                                      cudnnMathType_t *math, int *considered) {
    cudnnConvolutionFwdAlgoPerf_t perf[2 * CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int max_count = 0, returned = 0;
    *considered = 0;
    cudnnStatus_t s = cudnnGetConvolutionForwardAlgorithmMaxCount(dnn, &max_count);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    const int want = (int)(sizeof perf / sizeof perf[0]);
    if (max_count > want || max_count < 1) max_count = want;
    s = cudnnGetConvolutionForwardAlgorithm_v7(dnn, x, w, conv, y, max_count, &returned, perf);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    *considered = returned;
    for (int i = 0; i < returned; i++) {
        const cudnnConvolutionFwdAlgo_t a = perf[i].algo;
        if (perf[i].status != CUDNN_STATUS_SUCCESS ||
            (!allow_tensor_ops && perf[i].mathType != CUDNN_FMA_MATH) ||
            perf[i].determinism != CUDNN_DETERMINISTIC || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT ||
            a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
            a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD ||
            a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED)
            continue;
        /* The workspace for the math type the algorithm will run in. */
        if (cudnnSetConvolutionMathType(conv, perf[i].mathType) != CUDNN_STATUS_SUCCESS) continue;
        size_t bytes = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(dnn, x, w, conv, y, a, &bytes) !=
                CUDNN_STATUS_SUCCESS ||
            bytes > max_ws)
            continue;
        *algo = a;
        *ws = bytes;
        *math = perf[i].mathType;
        return CUDNN_STATUS_SUCCESS;
    }
    return CUDNN_STATUS_NOT_SUPPORTED;
}
