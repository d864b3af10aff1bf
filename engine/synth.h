/* synth.h — synthetic labelled image domains, so transfer can be shown with no download.
 *
 * Each class is a shape (circle, square, triangle, cross, diamond, ring, star, bar, ...); each
 * image draws one shape at a random position, size and colour. A style renders the same classes
 * in a different domain: related enough that a model trained on one transfers to the other.
 */
#ifndef DT_SYNTH_H
#define DT_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define SYNTH_MAX_CLASSES 8

/* Names of the available styles, NULL terminated ("solid", "outline", ...). */
extern const char *const synth_styles[];
/* Name of class k (0 <= k < SYNTH_MAX_CLASSES). */
const char *synth_class_name(int k);

/* Renders one image of class k in style into rgb (size,size,3). Deterministic in (seed, index). */
int synth_render(const char *style, int k, int size, uint64_t seed, uint64_t index, uint8_t *rgb);

/* Writes an image folder: out_dir/<class name>/<00000>.png, n_per_class images for each of
 * num_classes classes. Creates out_dir. Returns 0, or -1 with a message (unknown style, bad
 * count or size, I/O error). */
int synth_write_folder(const char *out_dir, const char *style, int num_classes, int n_per_class,
                       int size, uint64_t seed, char *err, size_t errlen);

#endif
