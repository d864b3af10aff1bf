/* image.h — image decoding, DiT preprocessing and PNG output (stb_image, stb_image_write,
 * stb_image_resize). Pixel buffers are 8-bit, interleaved (H, W, C) unless stated. */
#ifndef DT_IMAGE_H
#define DT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* The largest image image_load decodes, in pixels (8192 x 8192): a few header bytes can claim
 * any size, and the decoder would allocate it and fill what the file lacks with zeros. */
#define IMAGE_MAX_PIXELS ((int64_t)1 << 26)

/* Decodes a PNG/JPEG/BMP/... file into *pixels (H,W,channels), converting to `channels` (1 or 3).
 * Caller frees *pixels with free(). Returns 0, or -1 with a message naming the file (also for
 * an image of more than IMAGE_MAX_PIXELS pixels, refused before decoding). */
int image_load(const char *path, int channels, uint8_t **pixels, int *w, int *h,
               char *err, size_t errlen);

/* DiT/ADM center crop: box-downsample by 2 while the short side >= 2*size, resize (bicubic) so
 * the short side is `size`, then crop the centre size x size. src (h,w,c) -> dst (size,size,c). */
int image_center_crop(const uint8_t *src, int w, int h, int c, uint8_t *dst, int size);

/* Writes an 8-bit (h,w,c) buffer as PNG (c = 1, 3 or 4). Returns 0 or -1 with a message. */
int image_write_png(const char *path, const uint8_t *pixels, int w, int h, int c,
                    char *err, size_t errlen);

/* Writes n images (n, C, H, W) in [-1, 1] (clamped) as one PNG grid of `ncols` columns with a
 * 2-pixel border. C is 1 or 3. Returns 0 or -1 with a message. */
int image_write_grid(const char *path, const float *images, int n, int C, int H, int W,
                     int ncols, char *err, size_t errlen);

/* Quantises one image (C,H,W) in [-1,1] to uint8 (C,H,W) the way a saved PNG would. */
void image_quantize(const float *src, uint8_t *dst, size_t n);

#endif
