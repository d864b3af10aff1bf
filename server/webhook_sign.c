/* webhook_sign.c — the server's webhook secret (DIR/webhook.secret) and Standard Webhooks
 * signatures (webhook_sign.h). */
#include "webhook_sign.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* ---- base64 (standard alphabet, padded) ------------------------------------------------------ */

/* Decodes exactly n characters of padded base64 into out (room for 3n/4 bytes). Returns the
 * byte count, or -1 for anything that is not canonical base64. */
static long wh_base64_decode(const char *in, size_t n, unsigned char *out) {
    if (n == 0 || n % 4 != 0) return -1;
    size_t pad = in[n - 1] == '=' ? (in[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return -1;
    }
    int got = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (got < 0) return -1;
    return (long)got - (long)pad; /* EVP_DecodeBlock counts the padding as zero bytes */
}

/* ---- the secret ------------------------------------------------------------------------------ */

int webhook_secret_parse(const char *text, webhook_key *key) {
    size_t plen = strlen(WEBHOOK_SECRET_PREFIX);
    if (strncmp(text, WEBHOOK_SECRET_PREFIX, plen) != 0) return -1;
    const char *b64 = text + plen;
    size_t n = strlen(b64);
    while (n && (b64[n - 1] == '\n' || b64[n - 1] == '\r')) n--;
    if (n > 4 * ((WEBHOOK_KEY_MAX + 2) / 3)) return -1;
    unsigned char buf[WEBHOOK_KEY_MAX + 3];
    long len = wh_base64_decode(b64, n, buf);
    int ok = len >= WEBHOOK_KEY_MIN && len <= WEBHOOK_KEY_MAX;
    if (ok) {
        memcpy(key->bytes, buf, (size_t)len);
        key->len = (size_t)len;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return ok ? 0 : -1;
}

/* Reads the secret file into text (NUL-terminated, newline removed). Returns 0, 1 when the file
 * does not exist, or -1 with a message. */
static int wh_secret_read(const char *path, char *text, size_t text_len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) return 1;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, text, text_len - 1);
    int read_errno = errno;
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(read_errno));
        return -1;
    }
    text[n] = '\0';
    text[strcspn(text, "\r\n")] = '\0';
    return 0;
}

/* Makes a new secret and links it into place at path; EEXIST means another process was first,
 * which is reported as 1 (read theirs). Returns 0 (made), 1, or -1 with a message. */
static int wh_secret_create(const char *dir, const char *path, char *err, size_t errlen) {
    unsigned char raw[WEBHOOK_SECRET_BYTES];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        snprintf(err, errlen, "cannot read random bytes for a webhook secret: %s", strerror(errno));
        return -1;
    }
    char text[WEBHOOK_SECRET_TEXT_MAX];
    size_t plen = strlen(WEBHOOK_SECRET_PREFIX);
    memcpy(text, WEBHOOK_SECRET_PREFIX, plen);
    int n = EVP_EncodeBlock((unsigned char *)text + plen, raw, (int)sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    text[plen + (size_t)n] = '\n';
    size_t len = plen + (size_t)n + 1;

    char tmp[PATH_MAX];
    unsigned tag;
    if (getrandom(&tag, sizeof tag, 0) != (ssize_t)sizeof tag) tag = (unsigned)getpid();
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.%08x", dir, WEBHOOK_SECRET_FILE, (long)getpid(), tag);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = -1;
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a webhook secret in %s: %s", dir, strerror(errno));
        goto out;
    }
    ssize_t wrote = write(fd, text, len);
    int sync_failed = fsync(fd) != 0;
    int write_errno = errno;
    close(fd);
    if (wrote != (ssize_t)len || sync_failed) {
        snprintf(err, errlen, "cannot write a webhook secret in %s: %s", dir,
                 wrote < 0 || sync_failed ? strerror(write_errno) : "short write");
        unlink(tmp);
        goto out;
    }
    /* link, not rename: it fails instead of replacing a secret another process made */
    if (link(tmp, path) == 0) {
        rc = 0;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd); /* best effort: the name survives a power loss */
            close(dfd);
        }
    } else if (errno == EEXIST) {
        rc = 1;
    } else {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    }
    unlink(tmp);
out:
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}

int webhook_secret_load(const char *data_dir, char *text, size_t text_len, webhook_key *key,
                        int *created, char *err, size_t errlen) {
    char path[PATH_MAX], buf[WEBHOOK_SECRET_TEXT_MAX + 2];
    webhook_key parsed;
    if (created) *created = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", data_dir, WEBHOOK_SECRET_FILE) >= sizeof path) {
        snprintf(err, errlen, "the data directory's path is too long");
        return -1;
    }
    int rc = wh_secret_read(path, buf, sizeof buf, err, errlen);
    if (rc == 1) {
        int made = wh_secret_create(data_dir, path, err, errlen);
        if (made < 0) return -1;
        if (made == 0 && created) *created = 1;
        rc = wh_secret_read(path, buf, sizeof buf, err, errlen);
        if (rc == 1) {
            snprintf(err, errlen, "%s disappeared while it was being created", path);
            rc = -1;
        }
    }
    if (rc < 0) return -1;
    if (webhook_secret_parse(buf, &parsed) != 0) {
        OPENSSL_cleanse(buf, sizeof buf);
        snprintf(err, errlen,
                 "%s is not a webhook secret (\"whsec_\" and the base64 of %d to %d bytes); "
                 "remove it to have a new one made", path, WEBHOOK_KEY_MIN, WEBHOOK_KEY_MAX);
        return -1;
    }
    if (text) snprintf(text, text_len, "%s", buf);
    if (key) *key = parsed;
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(&parsed, sizeof parsed);
    return 0;
}

/* ---- signatures ------------------------------------------------------------------------------ */

int webhook_sign(const webhook_key *key, const char *id, int64_t timestamp, const char *body,
                 size_t body_len, char sig[WEBHOOK_SIGNATURE_MAX]) {
    char stamp[24];
    snprintf(stamp, sizeof stamp, "%" PRId64, timestamp);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    int ok = 0;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    if (ctx) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_MAC_init(ctx, key->bytes, key->len, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)stamp, strlen(stamp)) &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)body, body_len) &&
             EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) && mac_len == 32;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    if (!ok) return -1;
    memcpy(sig, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)sig + 3, mac, (int)mac_len); /* 44 characters and a NUL */
    return 0;
}
