/* test_webhook_sign.c — the signing half of job webhooks (server/webhook_sign.c): the Standard
 * Webhooks reference vector, the secret's format and its file (made once, mode 0600, shared by
 * concurrent creators, a damaged one refused and left alone). The deliveries themselves are
 * tested end to end by test_webhooks.sh. */
#include "webhook_sign.h"
#include "check.h"

#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

/* The example of the Standard Webhooks libraries' tests (and Svix's documentation). */
static void test_reference_vector(void)
{
    webhook_key key;
    CHECK(webhook_secret_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &key) == 0 && key.len == 24,
          "the reference secret parses (24 bytes)");
    const char *body = "{\"test\": 2432232314}";
    char sig[WEBHOOK_SIGNATURE_MAX];
    CHECK(webhook_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), sig) == 0,
          "signing");
    CHECK(!strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), "reference signature: %s", sig);
    /* every part is signed: another id, time or body gives another signature */
    char other[WEBHOOK_SIGNATURE_MAX];
    webhook_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJeK", 1614265330, body, strlen(body), other);
    CHECK(strcmp(sig, other) != 0, "the id is signed");
    webhook_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, strlen(body), other);
    CHECK(strcmp(sig, other) != 0, "the timestamp is signed");
    webhook_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body) - 1, other);
    CHECK(strcmp(sig, other) != 0, "the whole body is signed");
}

static void test_parse(void)
{
    static const char *const bad[] = {
        "", "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La LaSw",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 21 bytes */
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 66 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", "whsec_=fKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        webhook_key key;
        CHECK(webhook_secret_parse(bad[i], &key) != 0, "refused: '%s'", bad[i]);
    }
    webhook_key key;
    CHECK(webhook_secret_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", &key) == 0,
          "a trailing newline is allowed");
    CHECK(webhook_secret_parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", &key) == 0 &&
          key.len == 32, "32 bytes with padding");
    CHECK(webhook_secret_parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
                               &key) == 0 && key.len == 64, "64 bytes (the most)");
}

typedef struct {
    const char *dir;
    char text[WEBHOOK_SECRET_TEXT_MAX];
    int created, rc;
} loader;

static void *load_one(void *arg)
{
    loader *l = arg;
    char err[512];
    l->rc = webhook_secret_load(l->dir, l->text, sizeof l->text, NULL, &l->created, err, sizeof err);
    return NULL;
}

static void test_file(void)
{
    const char *dir = check_tmpdir("webhook_sign");
    char text[WEBHOOK_SECRET_TEXT_MAX], again[WEBHOOK_SECRET_TEXT_MAX], err[512];
    webhook_key key;
    int created = -1;
    CHECK(webhook_secret_load(dir, text, sizeof text, &key, &created, err, sizeof err) == 0,
          "first load makes it: %s", err);
    CHECK(created == 1 && !strncmp(text, "whsec_", 6) && strlen(text) == 6 + 44 && key.len == 32,
          "whsec_ and the base64 of 32 bytes: %s", text);
    struct stat st;
    CHECK(stat(check_path(dir, WEBHOOK_SECRET_FILE), &st) == 0 && (st.st_mode & 0777) == 0600,
          "mode 0600 (%o)", (unsigned)(st.st_mode & 0777));
    CHECK(webhook_secret_load(dir, again, sizeof again, NULL, &created, err, sizeof err) == 0 &&
          created == 0 && !strcmp(text, again), "the second load reads the same secret");

    /* eight processes' worth of creators racing on an empty directory agree on one secret */
    const char *race = check_tmpdir("webhook_sign_race");
    loader l[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        l[i] = (loader){.dir = race};
        pthread_create(&t[i], NULL, load_one, &l[i]);
    }
    int made = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK(l[i].rc == 0 && !strcmp(l[i].text, l[0].text), "racer %d agrees", i);
        made += l[i].created;
    }
    CHECK(made == 1, "exactly one racer made the secret (%d)", made);

    /* a damaged file is refused, named, and left for a person to look at */
    FILE *f = fopen(check_path(dir, WEBHOOK_SECRET_FILE), "w");
    fputs("not a secret\n", f);
    fclose(f);
    CHECK(webhook_secret_load(dir, again, sizeof again, NULL, NULL, err, sizeof err) != 0 &&
          strstr(err, WEBHOOK_SECRET_FILE) && !strstr(err, "not a secret\n"),
          "a damaged secret is refused: %s", err);
    f = fopen(check_path(dir, WEBHOOK_SECRET_FILE), "r");
    char line[64] = "";
    CHECK(f && fgets(line, sizeof line, f) && !strcmp(line, "not a secret\n"), "and not replaced");
    if (f) fclose(f);
}

int main(void)
{
    test_reference_vector();
    test_parse();
    test_file();
    return check_done("test_webhook_sign");
}
