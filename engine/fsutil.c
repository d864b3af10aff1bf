/* fsutil.c — mkdir -p, existence checks and SHA-256 (OpenSSL's EVP digest). */
#include "fsutil.h"
#include "errmsg.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int fs_mkdirs(const char *path, char *err, size_t errlen) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) && errno != EEXIST) {
                dt_errorf(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
                return -1;
            }
            *p = saved;
            if (!saved) break;
        }
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a directory", path);
        return -1;
    }
    return 0;
}

int fs_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void fs_hex(const unsigned char *md, char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int fs_sha256_file(const char *path, char out_hex[65], char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    int bad = ferror(f);
    fclose(f);
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (bad) {
        snprintf(err, errlen, "read error on %s", path);
        return -1;
    }
    fs_hex(md, out_hex);
    return 0;
}

void fs_sha256_hex(const void *data, size_t len, char out_hex[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    fs_hex(md, out_hex);
}

int fs_errno_no_space(int errnum) {
    return errnum == ENOSPC || errnum == EDQUOT;
}

int fs_write_all(int fd, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len > 0) {
        /* write() moves at most ~2 GiB at once on Linux; ask for no more */
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return fs_errno_no_space(errno) ? FS_NO_SPACE : -1;
        }
        if (w == 0) { /* no progress and no reason given */
            errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int64_t fs_free_bytes(const char *path) {
    struct statvfs sv;
    if (statvfs(path, &sv) != 0) return -1;
    uint64_t bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return bytes > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)bytes;
}

int fs_check_free(const char *dir, const char *what, uint64_t need, uint64_t reserve,
                  const char *reserve_opt, char *err, size_t errlen) {
    int64_t free_bytes = fs_free_bytes(dir);
    if (free_bytes < 0) {
        dt_errorf(err, errlen, "cannot tell the free space of %s: %s", dir, strerror(errno));
        return -1;
    }
    if ((uint64_t)free_bytes >= need && (uint64_t)free_bytes - need >= reserve) return 0;
    dt_errorf(err, errlen, "disk full: %.1f MiB free, and %s needs %.1f MiB plus the free-space "
              "reserve of %.0f MiB (%s)", free_bytes / 1048576.0, what, need / 1048576.0,
              reserve / 1048576.0, reserve_opt);
    return FS_NO_SPACE;
}

int64_t fs_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}
