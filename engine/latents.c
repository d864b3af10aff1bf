/* latents.c — the latent cache of a dataset (encode once, resume, reuse, remove with the
 * dataset), posterior draws for training batches, and decoding sampled latents to images. */
#define _GNU_SOURCE /* nftw */
#include "latents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "errmsg.h"
#include "fsutil.h"
#include "rng.h"
#include "safetensors.h"

#define LATENTS_FILE "latents.safetensors"
#define LATENTS_SOURCE "dataset" /* in partial/: the dataset's real path, as text */
#define LATENTS_WALK_DEPTH 4         /* folders below the dataset root that are fingerprinted */
#define LATENTS_PROGRESS_S 1.0       /* seconds between progress events while encoding */

/* ---- the key ----------------------------------------------------------------------------- */

static int lat_name_filter(const struct dirent *e) { return e->d_name[0] != '.'; }
static int lat_name_cmp(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Hashes the names, sizes and modification times of the non-hidden entries under dir (sorted
 * by name, into folders up to `depth` levels further; files only when files_only). What the
 * dataset loader reads lives there, so an edited dataset hashes apart. Returns 0 or -1. */
static int lat_fingerprint(EVP_MD_CTX *ctx, const char *dir, int depth, int files_only,
                           char *err, size_t errlen) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, lat_name_filter, lat_name_cmp);
    if (n < 0) {
        dt_errorf(err, errlen, "cannot read folder %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX], line[PATH_MAX + 96];
        struct stat sb;
        int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (rc || len >= (int)sizeof path || stat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode) && !files_only && depth > 0) {
            len = snprintf(line, sizeof line, "D %s\n", names[i]->d_name);
            EVP_DigestUpdate(ctx, line, (size_t)len);
            rc = lat_fingerprint(ctx, path, depth - 1, 0, err, errlen);
            EVP_DigestUpdate(ctx, "U\n", 2);
        } else if (S_ISREG(sb.st_mode)) {
            len = snprintf(line, sizeof line, "F %s %lld %lld.%09ld\n", names[i]->d_name,
                           (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
                           (long)sb.st_mtim.tv_nsec);
            EVP_DigestUpdate(ctx, line, (size_t)len);
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int latents_key(const char *dataset_path, const char *vae_path, int pixel_size, char key[65],
                char vae_sha256[65], char *err, size_t errlen) {
    char real[PATH_MAX], vae_hash[65], files_hex[65], text[PATH_MAX + 256];
    struct stat sb;
    if (!realpath(dataset_path, real) || stat(real, &sb) != 0) {
        dt_errorf(err, errlen, "dataset path %s does not exist: %s", dataset_path, strerror(errno));
        return -1;
    }
    if (fs_sha256_file(vae_path, vae_hash, err, errlen)) return -1;
    /* A dataset that is one IDX images file has its labels file beside it: the folder's files. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", real);
    int is_file = S_ISREG(sb.st_mode);
    if (is_file) {
        char *slash = strrchr(dir, '/');
        if (slash == dir) dir[1] = '\0';
        else if (slash) *slash = '\0';
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        dt_errorf(err, errlen, "out of memory hashing the dataset's files");
        return -1;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    int rc = lat_fingerprint(ctx, dir, is_file ? 0 : LATENTS_WALK_DEPTH, is_file, err, errlen);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (rc) return -1;
    for (int i = 0; i < 32; i++) snprintf(files_hex + 2 * i, 3, "%02x", md[i]);
    int n = snprintf(text, sizeof text, "%s|dataset=%s|files=%s|vae=%s|pixels=%d", LATENTS_FORMAT,
                     real, files_hex, vae_hash, pixel_size);
    fs_sha256_hex(text, (size_t)(n < (int)sizeof text ? n : (int)sizeof text - 1), key);
    if (vae_sha256) memcpy(vae_sha256, vae_hash, 65);
    return 0;
}

/* ---- loading ----------------------------------------------------------------------------- */

void latents_free(dt_latents *lat) {
    if (!lat) return;
    free(lat->mean);
    free(lat->std);
    free(lat->labels);
    if (lat->class_names)
        for (int i = 0; i < lat->num_classes; i++) free(lat->class_names[i]);
    free(lat->class_names);
    memset(lat, 0, sizeof *lat);
}

/* lat->class_names from a JSON array of num_classes strings. Returns 0 or -1. */
static int lat_class_names_from_json(dt_latents *lat, const char *text) {
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    int ok = json_is_array(a) && (int)json_array_size(a) == lat->num_classes &&
             (lat->class_names = calloc((size_t)lat->num_classes, sizeof(char *)));
    for (int i = 0; ok && i < lat->num_classes; i++) {
        const char *s = json_string_value(json_array_get(a, (size_t)i));
        ok = s && (lat->class_names[i] = strdup(s));
    }
    json_decref(a);
    return ok ? 0 : -1;
}

static long lat_meta_long(const st_file *f, const char *key) {
    const char *v = safetensors_meta(f, key);
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : -1;
    return v && end != v && !*end ? x : -1;
}

int latents_load(dt_latents *lat, const char *root, const char *key, int C, int h, int w,
                 char *err, size_t errlen) {
    memset(lat, 0, sizeof *lat);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/%s", root, key, LATENTS_FILE);
    if (!fs_exists(path)) return 1;
    st_file f;
    if (safetensors_open(&f, path, err, errlen)) return -1;
    const st_tensor *mean = safetensors_find(&f, "mean"), *std = safetensors_find(&f, "std"),
                    *labels = safetensors_find(&f, "labels");
    const char *format = safetensors_meta(&f, "format");
    long n = mean ? (long)mean->shape[0] : 0, classes = lat_meta_long(&f, "num_classes"),
         pixels = lat_meta_long(&f, "pixel_size");
    int rc = -1;
    int ok = format && !strcmp(format, LATENTS_FORMAT) && mean && std && labels && n >= 1 &&
             n <= INT_MAX && classes >= 1 && classes <= INT_MAX && pixels >= 1;
    for (int k = 0; ok && k < 2; k++) {
        const st_tensor *t = k ? std : mean;
        ok = t->dtype == ST_F32 && t->ndim == 5 && t->shape[0] == n && t->shape[1] == 2 &&
             t->shape[2] == C && t->shape[3] == h && t->shape[4] == w;
    }
    ok = ok && labels->dtype == ST_I32 && labels->ndim == 1 && labels->shape[0] == n;
    if (!ok) {
        dt_errorf(err, errlen, "%s is not a latent cache of %dx%dx%d latents (%s): delete it to "
                  "encode the dataset again", path, C, h, w, LATENTS_FORMAT);
        goto done;
    }
    lat->n = (int)n;
    lat->C = C;
    lat->h = h;
    lat->w = w;
    lat->pixel_size = (int)pixels;
    lat->num_classes = (int)classes;
    lat->mean = malloc(mean->nbytes);
    lat->std = malloc(std->nbytes);
    lat->labels = malloc(labels->nbytes);
    if (!lat->mean || !lat->std || !lat->labels) {
        dt_errorf(err, errlen, "out of memory loading %s (%zu bytes)", path, 2 * mean->nbytes);
        goto done;
    }
    memcpy(lat->mean, f.data + mean->offset, mean->nbytes);
    memcpy(lat->std, f.data + std->offset, std->nbytes);
    memcpy(lat->labels, f.data + labels->offset, labels->nbytes);
    for (int i = 0; i < lat->n; i++)
        if (lat->labels[i] < 0 || lat->labels[i] >= lat->num_classes) {
            dt_errorf(err, errlen, "%s: label %d of image %d is outside 0..%d", path,
                      lat->labels[i], i, lat->num_classes - 1);
            goto done;
        }
    if (lat_class_names_from_json(lat, safetensors_meta(&f, "class_names"))) {
        dt_errorf(err, errlen, "%s: __metadata__.class_names is not an array of %d names", path,
                  lat->num_classes);
        goto done;
    }
    rc = 0;
done:
    safetensors_close(&f);
    if (rc) latents_free(lat);
    return rc;
}

int latents_as_dataset(const dt_latents *lat, dt_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->n = lat->n;
    ds->C = 3;
    ds->H = ds->W = lat->pixel_size;
    ds->num_classes = lat->num_classes;
    ds->labels = malloc(sizeof(int32_t) * (size_t)lat->n);
    ds->class_names = calloc((size_t)lat->num_classes, sizeof(char *));
    if (!ds->labels || !ds->class_names) goto oom;
    memcpy(ds->labels, lat->labels, sizeof(int32_t) * (size_t)lat->n);
    for (int i = 0; i < lat->num_classes; i++)
        if (!(ds->class_names[i] = strdup(lat->class_names[i] ? lat->class_names[i] : ""))) goto oom;
    return 0;
oom:
    dataset_free(ds);
    return -1;
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* Reads a finished chunk (mean floats, then as many std floats) into mean and std; 0 when the
 * file is there and exactly that long. */
static int lat_read_chunk(const char *path, float *mean, float *std, size_t floats) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(mean, sizeof(float), floats, f);
    got += fread(std, sizeof(float), floats, f);
    int extra = fgetc(f);
    fclose(f);
    return got == 2 * floats && extra == EOF ? 0 : -1;
}

/* Writes a chunk crash-safely: a temporary file of this process (two jobs encoding the same
 * dataset write the same bytes, each through its own file), fsync, rename (a torn chunk has the
 * wrong size and is encoded again). Returns 0, FS_NO_SPACE or -1 with a message. */
static int lat_write_chunk(const char *path, const float *mean, const float *std, size_t floats,
                           char *err, size_t errlen) {
    char tmp[4600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -1 : fs_write_all(fd, mean, floats * sizeof(float));
    if (rc == 0) rc = fs_write_all(fd, std, floats * sizeof(float));
    if (rc == 0 && fsync(fd) != 0) rc = fs_errno_no_space(errno) ? FS_NO_SPACE : -1;
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        saved = errno;
        rc = fs_errno_no_space(errno) ? FS_NO_SPACE : -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        saved = errno;
        rc = -1;
    }
    if (rc) {
        unlink(tmp);
        dt_errorf(err, errlen, "cannot write the latent chunk %s: %s", path, strerror(saved));
    }
    return rc;
}

/* The cache file: mean, std, labels and the metadata of the module comment. */
static int lat_write_file(const char *path, const dt_latents *lat, const dt_latents_encode_opts *o,
                          const char *source, char *err, size_t errlen) {
    json_t *names = json_array();
    for (int i = 0; i < lat->num_classes; i++)
        json_array_append_new(names, json_string(lat->class_names[i] ? lat->class_names[i] : ""));
    char *names_text = json_dumps(names, JSON_COMPACT);
    json_decref(names);
    if (!names_text) {
        dt_errorf(err, errlen, "out of memory (or a class name that is not UTF-8) writing %s", path);
        return -1;
    }
    char n_s[24], px_s[24], k_s[24];
    snprintf(n_s, sizeof n_s, "%d", lat->n);
    snprintf(px_s, sizeof px_s, "%d", lat->pixel_size);
    snprintf(k_s, sizeof k_s, "%d", lat->num_classes);
    const char *meta[] = {"format", LATENTS_FORMAT, "images", n_s, "pixel_size", px_s,
                          "num_classes", k_s, "class_names", names_text,
                          "vae_sha256", o->vae_sha256 ? o->vae_sha256 : "",
                          "dataset", source, NULL};
    st_write_tensor t[3] = {
        {.name = "mean", .dtype = ST_F32, .ndim = 5,
         .shape = {lat->n, 2, lat->C, lat->h, lat->w}, .data = lat->mean},
        {.name = "std", .dtype = ST_F32, .ndim = 5,
         .shape = {lat->n, 2, lat->C, lat->h, lat->w}, .data = lat->std},
        {.name = "labels", .dtype = ST_I32, .ndim = 1, .shape = {lat->n}, .data = lat->labels},
    };
    int rc = safetensors_write(path, t, 3, meta, err, errlen);
    free(names_text);
    return rc;
}

/* Writes partial/dataset (the source path) unless it is there: a temporary file of this process,
 * then rename. Best effort: without it an unfinished cache is only not removed with its dataset. */
static void lat_write_source(const char *partial, const char *source) {
    char path[4400], tmp[4500];
    snprintf(path, sizeof path, "%s/%s", partial, LATENTS_SOURCE);
    if (fs_exists(path)) return;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok = fd >= 0 && fs_write_all(fd, source, strlen(source)) == 0;
    if (fd >= 0 && close(fd) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

/* Removes the pieces of an encoding (chunks, and temporary files that crashed writers left) and
 * their folder. */
static void lat_remove_pieces(const char *partial) {
    struct dirent **names = NULL;
    int n = scandir(partial, &names, lat_name_filter, NULL);
    for (int i = 0; i < n; i++) {
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", partial, names[i]->d_name);
        unlink(path);
        free(names[i]);
    }
    free(names);
    rmdir(partial);
}

/* lat's shape, labels and class names from ds and the VAE, and its mean and std arrays. */
static int lat_alloc(dt_latents *lat, const dt_dataset *ds, const vae_config *vc, char *err,
                     size_t errlen) {
    memset(lat, 0, sizeof *lat);
    lat->n = ds->n;
    lat->C = vc->latent_channels;
    lat->h = ds->H / vc->downsample;
    lat->w = ds->W / vc->downsample;
    lat->pixel_size = ds->H;
    lat->num_classes = ds->num_classes;
    const size_t floats = (size_t)ds->n * 2 * lat->C * lat->h * lat->w;
    lat->mean = malloc(floats * sizeof(float));
    lat->std = malloc(floats * sizeof(float));
    lat->labels = malloc(sizeof(int32_t) * (size_t)ds->n);
    lat->class_names = calloc((size_t)ds->num_classes, sizeof(char *));
    int ok = lat->mean && lat->std && lat->labels && lat->class_names;
    for (int i = 0; ok && i < ds->num_classes; i++)
        ok = (lat->class_names[i] = strdup(ds->class_names && ds->class_names[i]
                                               ? ds->class_names[i] : "")) != NULL;
    if (!ok) {
        dt_errorf(err, errlen, "out of memory for the latents of %d images (%zu bytes)", ds->n,
                  2 * floats * sizeof(float));
        latents_free(lat);
        return -1;
    }
    memcpy(lat->labels, ds->labels, sizeof(int32_t) * (size_t)ds->n);
    return 0;
}

/* Backend and host buffers of one VAE batch. */
typedef struct {
    float *h_images;            /* (batch, 3, P, P) host */
    float *images, *mean, *std; /* backend: (batch, 3, P, P), (batch, C, h, w) x 2 */
} lat_work;

static void lat_work_free(lat_work *wk, dt_backend *be) {
    free(wk->h_images);
    if (wk->images) be->free(be, wk->images);
    if (wk->mean) be->free(be, wk->mean);
    if (wk->std) be->free(be, wk->std);
}

/* Timing of an encoding, for its progress events. */
typedef struct {
    double t0, last_progress;
    long fresh_views;   /* views encoded by this run */
    long done_views;    /* views finished (read back or encoded) */
} lat_clock;

static void lat_progress(const dt_latents_encode_opts *o, const dt_latents *lat, lat_clock *ck,
                         int force) {
    double now = dt_now();
    if (!force && now - ck->last_progress < LATENTS_PROGRESS_S) return;
    ck->last_progress = now;
    double el = now - ck->t0, ips = el > 0 ? ck->fresh_views / 2.0 / el : 0.0;
    long done = ck->done_views / 2;
    events_emit(o->ev, "progress",
                json_pack("{s:s, s:i, s:i, s:f, s:f}", "phase", "encoding", "step", (int)done,
                          "total_steps", lat->n, "images_per_second", ips, "eta_seconds",
                          ips > 0 ? (lat->n - done) / ips : 0.0));
}

/* Encodes views [v0, v0 + nv) (view v = image v / 2, flip v % 2) into lat, batch by batch,
 * emitting rate-limited progress. Returns 0, 1 when stopped, or -1 with a message. */
static int lat_encode_views(dt_latents *lat, const dt_dataset *ds, vae_model *vae, dt_backend *be,
                            const dt_latents_encode_opts *o, lat_work *wk, long v0, long nv,
                            lat_clock *ck, char *err, size_t errlen) {
    const size_t limg = (size_t)lat->C * lat->h * lat->w, pimg = (size_t)3 * ds->H * ds->W;
    for (long v = v0; v < v0 + nv;) {
        if (o->stop && *o->stop) return 1;
        const int b = (int)(v0 + nv - v < o->batch ? v0 + nv - v : o->batch);
        for (int j = 0; j < b; j++)
            dataset_image_to_float(ds, (int)((v + j) / 2), (int)((v + j) % 2),
                                   wk->h_images + (size_t)j * pimg);
        be->upload(be, wk->images, wk->h_images, (size_t)b * pimg * sizeof(float));
        int r = vae_encode(vae, wk->images, b, ds->H, ds->W, wk->mean, wk->std);
        be->download(be, lat->mean + (size_t)v * limg, wk->mean, (size_t)b * limg * sizeof(float));
        be->download(be, lat->std + (size_t)v * limg, wk->std, (size_t)b * limg * sizeof(float));
        if (r || be->sync(be)) {
            dt_errorf(err, errlen, "backend failure while encoding the dataset with the VAE on "
                      "%s: %s", be->name, be->last_error(be));
            return -1;
        }
        v += b;
        ck->fresh_views += b;
        ck->done_views += b;
        lat_progress(o, lat, ck, 0);
    }
    return 0;
}

int latents_encode(dt_latents *lat, const dt_dataset *ds, vae_model *vae, dt_backend *be,
                   const dt_latents_encode_opts *o, char *err, size_t errlen) {
    const vae_config *vc = vae_get_config(vae);
    memset(lat, 0, sizeof *lat);
    if (ds->C != vc->in_channels || ds->H != ds->W || ds->H % vc->downsample || ds->n < 1 ||
        o->batch < 1) {
        dt_errorf(err, errlen, "cannot encode %d images of %dx%dx%d with a VAE for %d-channel "
                  "images whose side is a multiple of %d (batch %d)", ds->n, ds->H, ds->W, ds->C,
                  vc->in_channels, vc->downsample, o->batch);
        return -1;
    }
    char dir[4200], path[4300], partial[4300];
    snprintf(dir, sizeof dir, "%s/%s", o->root, o->key);
    snprintf(path, sizeof path, "%s/%s", dir, LATENTS_FILE);
    snprintf(partial, sizeof partial, "%s/partial", dir);
    if (fs_mkdirs(partial, err, errlen)) return -1;
    /* where the cache comes from, for latents_remove_dataset: resolved, as the key's path */
    char source[PATH_MAX] = "";
    if (o->dataset && !realpath(o->dataset, source)) snprintf(source, sizeof source, "%s", o->dataset);
    if (source[0]) lat_write_source(partial, source);
    if (lat_alloc(lat, ds, vc, err, errlen)) return -1;

    const int chunk = o->chunk > 0 ? o->chunk : LATENTS_CHUNK;
    const int chunks = (ds->n + chunk - 1) / chunk;
    const size_t limg = (size_t)lat->C * lat->h * lat->w, pimg = (size_t)3 * ds->H * ds->W;
    lat_work wk = {0};
    wk.h_images = malloc((size_t)o->batch * pimg * sizeof(float));
    wk.images = be->alloc(be, (size_t)o->batch * pimg * sizeof(float));
    wk.mean = be->alloc(be, (size_t)o->batch * limg * sizeof(float));
    wk.std = be->alloc(be, (size_t)o->batch * limg * sizeof(float));
    int rc = -1;
    if (!wk.h_images || !wk.images || !wk.mean || !wk.std) {
        dt_errorf(err, errlen, "out of memory for a VAE batch of %d images of %dx%d", o->batch,
                  ds->H, ds->W);
        goto done;
    }
    lat_clock ck = {.t0 = dt_now()};
    int kept = 0, fresh_chunks = 0;
    for (int k = 0; k < chunks; k++) {
        char cpath[4500];
        snprintf(cpath, sizeof cpath, "%s/chunk_%06d.f32", partial, k);
        const long first = (long)k * chunk, n = ds->n - first < chunk ? ds->n - first : chunk;
        const size_t off = (size_t)first * 2 * limg, floats = (size_t)n * 2 * limg;
        if (lat_read_chunk(cpath, lat->mean + off, lat->std + off, floats) == 0) {
            kept += (int)n;
            ck.done_views += 2 * n;
            continue;
        }
        if (o->stop_after_chunks > 0 && fresh_chunks >= o->stop_after_chunks) {
            rc = 1;
            goto done;
        }
        if (fresh_chunks == 0) {
            if (kept)
                events_log(o->ev, "info", "resuming the latent encoding in %s: %d of %d images "
                           "were already encoded", dir, kept, ds->n);
            else
                events_log(o->ev, "info", "encoding %d images of %dx%d (and their mirror images) "
                           "into %dx%dx%d latents in %s", ds->n, ds->H, ds->W, lat->C, lat->h,
                           lat->w, dir);
            lat_progress(o, lat, &ck, 1);
        }
        int r = lat_encode_views(lat, ds, vae, be, o, &wk, 2 * first, 2 * n, &ck, err, errlen);
        if (r) {
            rc = r;
            goto done;
        }
        if ((r = lat_write_chunk(cpath, lat->mean + off, lat->std + off, floats, err, errlen))) {
            /* Another job encoding the same dataset finished first and removed the pieces: its
             * file is the same data. */
            dt_latents theirs;
            if (r == -1 && fs_exists(path) &&
                latents_load(&theirs, o->root, o->key, lat->C, lat->h, lat->w, err, errlen) == 0) {
                latents_free(lat);
                *lat = theirs;
                rc = 0;
                goto done;
            }
            rc = r;
            goto done;
        }
        fresh_chunks++;
    }
    lat_progress(o, lat, &ck, 1);
    if ((rc = lat_write_file(path, lat, o, source, err, errlen))) goto done;
    lat_remove_pieces(partial); /* the whole set is safe */
    rc = 0;
done:
    lat_work_free(&wk, be);
    if (rc) latents_free(lat);
    return rc;
}

/* ---- removal with the dataset ------------------------------------------------------------- */

/* The source dataset of cache dir (ROOT/<key>) into out: the finished file's metadata, else the
 * unfinished encoding's partial/dataset. Returns 0, or -1 when neither can be read. */
static int lat_cache_source(const char *dir, char *out, size_t outlen) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, LATENTS_FILE);
    if (fs_exists(path)) {
        st_file f;
        char why[256];
        if (safetensors_open(&f, path, why, sizeof why)) return -1;
        const char *src = safetensors_meta(&f, "dataset");
        int ok = src && src[0] && strlen(src) < outlen;
        if (ok) snprintf(out, outlen, "%s", src);
        safetensors_close(&f);
        return ok ? 0 : -1;
    }
    snprintf(path, sizeof path, "%s/partial/%s", dir, LATENTS_SOURCE);
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    size_t n = fread(out, 1, outlen - 1, fp);
    int whole = fgetc(fp) == EOF;
    fclose(fp);
    out[n] = '\0';
    return n > 0 && whole && strlen(out) == n ? 0 : -1;
}

/* path resolved (symbolic links, "..") into out when it exists, else as given without trailing
 * slashes. */
static void lat_resolve(const char *path, char out[PATH_MAX]) {
    if (realpath(path, out)) return;
    snprintf(out, PATH_MAX, "%s", path);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--) out[n - 1] = '\0';
}

static int lat_remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

int latents_remove_dataset(const char *root, const char *dataset_dir, char *err, size_t errlen) {
    char dir[PATH_MAX];
    lat_resolve(dataset_dir, dir);
    const size_t dlen = strlen(dir);
    struct dirent **names = NULL;
    int n = scandir(root, &names, lat_name_filter, lat_name_cmp);
    if (n < 0) {
        if (errno == ENOENT) return 0;
        dt_errorf(err, errlen, "cannot read the latent caches in %s: %s", root, strerror(errno));
        return -1;
    }
    int removed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        char cache[PATH_MAX], src[PATH_MAX], real[PATH_MAX];
        struct stat sb;
        int len = snprintf(cache, sizeof cache, "%s/%s", root, names[i]->d_name);
        free(names[i]);
        if (len >= (int)sizeof cache || lstat(cache, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
            lat_cache_source(cache, src, sizeof src))
            continue;
        lat_resolve(src, real);
        if (strncmp(real, dir, dlen) || (real[dlen] != '\0' && real[dlen] != '/' &&
                                          strcmp(dir, "/")))
            continue;
        if (nftw(cache, lat_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
            if (!failed)
                dt_errorf(err, errlen, "cannot remove the latent cache %s: %s", cache,
                          strerror(errno));
            failed = 1;
            continue;
        }
        removed++;
    }
    free(names);
    return failed ? -1 : removed;
}

/* ---- training draws ---------------------------------------------------------------------- */

void latents_draw(const dt_latents *lat, int i, int flip, uint64_t seed, uint64_t slot,
                  float *x0) {
    const size_t limg = (size_t)lat->C * lat->h * lat->w;
    const size_t off = ((size_t)i * 2 + (flip ? 1 : 0)) * limg;
    const float *mean = lat->mean + off, *std = lat->std + off;
    const uint64_t base = slot * (uint64_t)limg;
    for (size_t j = 0; j < limg; j++)
        x0[j] = mean[j] + std[j] * dt_philox_normal(seed, DT_STREAM_LATENT, base + j);
}

/* ---- decoding ---------------------------------------------------------------------------- */

int latent_decoder_init(dt_latent_decoder *d, vae_model *vae, dt_backend *be, int batch, int C,
                        int h, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    const vae_config *vc = vae_get_config(vae);
    if (C != vc->latent_channels) {
        dt_errorf(err, errlen, "the VAE decodes %d-channel latents, not %d", vc->latent_channels, C);
        return -1;
    }
    if (batch < 1 || h < 1) {
        dt_errorf(err, errlen, "a latent decoder needs a batch >= 1 and latents >= 1 cell");
        return -1;
    }
    d->vae = vae;
    d->be = be;
    d->batch = batch;
    d->C = C;
    d->h = d->w = h;
    d->pixels = h * vc->downsample;
    if (vae_reserve(vae, batch, d->pixels, err, errlen)) return -1;
    const size_t z = (size_t)batch * C * h * h, img = (size_t)batch * 3 * d->pixels * d->pixels;
    d->z_dev = be->alloc(be, z * sizeof(float));
    d->img_dev = be->alloc(be, img * sizeof(float));
    if (!d->z_dev || !d->img_dev) {
        dt_errorf(err, errlen, "out of memory on %s for decoding %d latents into %dx%d images",
                  be->name, batch, d->pixels, d->pixels);
        latent_decoder_free(d);
        return -1;
    }
    return 0;
}

int latent_decode(dt_latent_decoder *d, const float *z, int n, float *images) {
    dt_backend *be = d->be;
    const size_t zimg = (size_t)d->C * d->h * d->w, img = (size_t)3 * d->pixels * d->pixels;
    for (int first = 0; first < n; first += d->batch) {
        const int b = n - first < d->batch ? n - first : d->batch;
        be->upload(be, d->z_dev, z + (size_t)first * zimg, (size_t)b * zimg * sizeof(float));
        int r = vae_decode(d->vae, d->z_dev, b, d->h, d->w, d->img_dev);
        if (r) return r;
        be->download(be, images + (size_t)first * img, d->img_dev, (size_t)b * img * sizeof(float));
    }
    return be->sync(be);
}

void latent_decoder_free(dt_latent_decoder *d) {
    if (d->be) {
        if (d->z_dev) d->be->free(d->be, d->z_dev);
        if (d->img_dev) d->be->free(d->be, d->img_dev);
    }
    memset(d, 0, sizeof *d);
}
