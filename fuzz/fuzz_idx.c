/* fuzz_idx.c — the IDX dataset reader (engine/dataset.c) on arbitrary image and label files.
 *
 * Input layout: byte 0 chooses the load (bits 0-4: image size - 1, bit 5: 3 channels instead
 * of 1, bit 6: pass the images file itself rather than its folder, bit 7: add a second,
 * training-named images file so the folder scan must choose); bytes 1-2 (little-endian, taken
 * modulo what is left) are the length of the images file; the images file follows, then the
 * labels file. Both are written into a fresh folder and loaded with dataset_load_visit.
 *
 * Checked besides the sanitizers: an accepted dataset has the asked shape, at least one image,
 * labels inside its class count, a name for every class, and every visited source image is
 * readable in full (w x h x c bytes).
 */
#include "fuzz_util.h"

#include <sys/stat.h>

#include "dataset.h"

typedef struct {
    int calls, n;
    uint64_t sum;
} fuzz_idx_seen;

static void fuzz_idx_visit(void *ctx, int index, int label, const uint8_t *pixels, int w, int h,
                           int c) {
    fuzz_idx_seen *s = ctx;
    FUZZ_CHECK(w >= 1 && h >= 1 && c >= 1 && label >= 0 && index >= 0, "bad visit");
    for (size_t i = 0; i < (size_t)w * h * c; i++) s->sum += pixels[i]; /* ASan: in bounds */
    s->calls++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const int size_px = 1 + (data[0] & 31), channels = data[0] & 32 ? 3 : 1;
    const int pass_file = data[0] & 64, second_set = data[0] & 128;
    size_t rest = size - 3, img_len = (size_t)(data[1] | data[2] << 8) % (rest + 1);
    const uint8_t *img = data + 3, *lab = img + img_len;

    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/idx", fuzz_scratch());
    fuzz_remove_tree(dir);
    if (mkdir(dir, 0755) != 0) abort();
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    fuzz_write_file(path, img, img_len);
    if (second_set) { /* the same bytes again as the training set, which the scan prefers */
        snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
        fuzz_write_file(path, img, img_len);
    }
    char labels[700];
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte", dir);
    fuzz_write_file(labels, lab, rest - img_len);

    dt_dataset ds;
    fuzz_idx_seen seen = {0};
    char err[512];
    int rc = dataset_load_visit(&ds, pass_file ? path : dir, size_px, channels, fuzz_idx_visit,
                                &seen, err, sizeof err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && err[0], "refusal without a message");
        return 0;
    }
    FUZZ_CHECK(ds.n >= 1 && ds.C == channels && ds.H == size_px && ds.W == size_px,
               "shape %d x %d x %d x %d", ds.n, ds.C, ds.H, ds.W);
    FUZZ_CHECK(ds.num_classes >= 1 && ds.num_classes <= 256, "%d classes", ds.num_classes);
    FUZZ_CHECK(seen.calls == ds.n, "%d visits for %d images", seen.calls, ds.n);
    for (int k = 0; k < ds.num_classes; k++) FUZZ_CHECK(ds.class_names[k], "class %d unnamed", k);
    uint64_t sum = 0;
    for (int i = 0; i < ds.n; i++) {
        FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < ds.num_classes, "label %d", ds.labels[i]);
        const uint8_t *p = ds.images + (size_t)i * ds.C * ds.H * ds.W;
        for (int j = 0; j < ds.C * ds.H * ds.W; j++) sum += p[j];
    }
    (void)sum;
    dataset_free(&ds);
    return 0;
}
