/* backend_create.c — picks a compute backend from a device string. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#ifdef DIFFTUNE_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

static void backend_create_error(char *err, size_t errlen, const char *msg, const char *device) {
    if (err && errlen) snprintf(err, errlen, msg, device);
}

/* 1 when `device` is "cuda" or "cuda:N" with N decimal digits (the index goes to *index). */
static int backend_create_parse_cuda(const char *device, int *index) {
    if (strncmp(device, "cuda", 4) != 0) return 0;
    if (device[4] == '\0') {
        *index = 0;
        return 1;
    }
    if (device[4] != ':' || device[5] == '\0') return 0;
    long value = 0;
    for (const char *s = device + 5; *s; s++) {
        if (!isdigit((unsigned char)*s) || value > 1000000) return 0;
        value = value * 10 + (*s - '0');
    }
    *index = (int)value;
    return 1;
}

static dt_backend *backend_create_cpu(char *err, size_t errlen) {
    dt_backend *be = dt_backend_cpu_create();
    if (!be) backend_create_error(err, errlen, "out of memory creating the %s backend", "cpu");
    return be;
}

/* Creates the backend named by `device`: "cpu"; "auto" (CUDA device 0 when the CUDA backend is
 * built and a device is present, else CPU); "cuda" or "cuda:N". On failure returns NULL and
 * writes a one-line reason to err (when err is non-NULL). The caller releases the result with
 * be->destroy(be). */
dt_backend *dt_backend_create(const char *device, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!device) device = "auto";
    int cuda_index = 0;
    if (strcmp(device, "cpu") == 0) return backend_create_cpu(err, errlen);
    if (strcmp(device, "auto") == 0) {
#ifdef DIFFTUNE_HAVE_CUDA
        /* A GPU that is present but fails to initialise is an error, not a silent CPU run. */
        if (dt_cuda_device_count(NULL, 0) > 0) return dt_backend_cuda_create(0, err, errlen);
#endif
        return backend_create_cpu(err, errlen);
    }
    if (backend_create_parse_cuda(device, &cuda_index)) {
#ifdef DIFFTUNE_HAVE_CUDA
        return dt_backend_cuda_create(cuda_index, err, errlen);
#else
        if (err && errlen)
            snprintf(err, errlen, "difftune was built without the CUDA backend (device cuda:%d); "
                     "rebuild on a machine with the CUDA toolkit (nvcc) or use --device cpu", cuda_index);
        return NULL;
#endif
    }
    backend_create_error(err, errlen,
                         "unknown device \"%s\": use \"cpu\", \"auto\", \"cuda\" or \"cuda:N\" "
                         "(N = GPU index)", device);
    return NULL;
}

/* "fp32" or "bf16". */
const char *dt_precision_name(dt_precision p) {
    return p == DT_PRECISION_BF16 ? "bf16" : "fp32";
}

/* "auto" picks bf16 only where it buys speed: a backend other than the CPU reference. */
int dt_precision_parse(const char *name, const dt_backend *be, dt_precision *out) {
    if (!strcmp(name, "fp32")) *out = DT_PRECISION_FP32;
    else if (!strcmp(name, "bf16")) *out = DT_PRECISION_BF16;
    else if (!strcmp(name, "auto"))
        *out = be && strcmp(be->name, "cpu") ? DT_PRECISION_BF16 : DT_PRECISION_FP32;
    else return -1;
    return 0;
}
