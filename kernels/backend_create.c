/* backend_create.c — picks a compute backend from a device string. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

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

/* Creates the backend named by `device`: "cpu"; "auto" (CUDA device 0 when the CUDA backend is
 * built and a device is present, else CPU); "cuda" or "cuda:N". On failure returns NULL and
 * writes a one-line reason to err (when err is non-NULL). The caller releases the result with
 * be->destroy(be). */
dt_backend *dt_backend_create(const char *device, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!device) device = "auto";
    int cuda_index = 0;
    if (strcmp(device, "cpu") == 0 || strcmp(device, "auto") == 0) {
#ifdef DIFFTUNE_HAVE_CUDA
        /* Hook: for "auto", try the CUDA backend on device 0 here and fall back to the CPU when
         * no device is present, once kernels/cuda provides its constructor. */
#endif
        dt_backend *be = dt_backend_cpu_create();
        if (!be) backend_create_error(err, errlen, "out of memory creating the %s backend", "cpu");
        return be;
    }
    if (backend_create_parse_cuda(device, &cuda_index)) {
#ifdef DIFFTUNE_HAVE_CUDA
        /* Hook: create the CUDA backend on device cuda_index here. */
#endif
        if (err && errlen)
            snprintf(err, errlen, "difftune was built without the CUDA backend (device cuda:%d)",
                     cuda_index);
        return NULL;
    }
    backend_create_error(err, errlen,
                         "unknown device \"%s\": use \"cpu\", \"auto\", \"cuda\" or \"cuda:N\" "
                         "(N = GPU index)", device);
    return NULL;
}
