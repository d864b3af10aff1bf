/* webhook_sign.h — the signing half of webhooks (Standard Webhooks 1.0, symmetric scheme): the
 * server's secret and the webhook-signature header. No HTTP here, so tests link it alone.
 *
 * The secret is one per server (data directory): "whsec_" and the base64 of 32 random bytes,
 * kept in DIR/webhook.secret (mode 0600). Receivers base64-decode what follows "whsec_" and use
 * the bytes as the HMAC-SHA256 key over "<webhook-id>.<webhook-timestamp>.<body>".
 * No function here prints, and no error message holds the secret.
 */
#ifndef DT_WEBHOOK_SIGN_H
#define DT_WEBHOOK_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_SECRET_FILE "webhook.secret" /* in the data directory */
#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_BYTES 32              /* of a secret this server makes */
#define WEBHOOK_KEY_MIN 24                   /* the spec's bounds on a symmetric key */
#define WEBHOOK_KEY_MAX 64
#define WEBHOOK_SECRET_TEXT_MAX 96           /* "whsec_" + base64 of 64 bytes + NUL */
#define WEBHOOK_SIGNATURE_MAX 48             /* "v1," + base64 of 32 bytes + NUL */

typedef struct {
    unsigned char bytes[WEBHOOK_KEY_MAX];
    size_t len;
} webhook_key;

/* Parses "whsec_<base64>" (standard alphabet, padded; a trailing newline is allowed) into key:
 * 24 to 64 bytes. Returns 0, or -1 when text is not such a secret. */
int webhook_secret_parse(const char *text, webhook_key *key);

/* Reads DIR/webhook.secret, creating it first when missing: 32 bytes from the kernel's random
 * source, written mode 0600 to a temporary file that is then linked into place, so that two
 * processes creating it at once (the server and `difftune webhooks secret`) agree on one.
 * text (text_len >= WEBHOOK_SECRET_TEXT_MAX; may be NULL) receives the secret as receivers are
 * given it, key (may be NULL) the HMAC key, *created (may be NULL) 1 when this call made the
 * file. Returns 0, or -1 with a message in err (a file that is not a secret is refused, not
 * replaced). */
int webhook_secret_load(const char *data_dir, char *text, size_t text_len, webhook_key *key,
                        int *created, char *err, size_t errlen);

/* The webhook-signature header value of one attempt: "v1," and the base64 of
 * HMAC-SHA256(key, "<id>.<timestamp>.<body>"), into sig. body is body_len bytes (not
 * NUL-terminated). Returns 0, or -1 when the crypto library failed. */
int webhook_sign(const webhook_key *key, const char *id, int64_t timestamp, const char *body,
                 size_t body_len, char sig[WEBHOOK_SIGNATURE_MAX]);

#endif
