/* store_check.h — the store tests' checks of a call's result code (tests/test_store*.c). Include
 * after check.h and store.h; the including file defines `static char err[N]`, which every store
 * call of the test is given (E is its length, short so calls stay on one line). */
#ifndef DT_TEST_STORE_CHECK_H
#define DT_TEST_STORE_CHECK_H

/* Runs a store call and checks its result code; on a mismatch prints the call and the message. A
 * failing call must say why. */
#define EXPECT(call, want) do { \
    err[0] = '\0'; \
    int got_ = (call); \
    CHECK(got_ == (want), "%s returned %d (%s), want %d: %s", #call, got_, \
          store_code_name(got_), (want), err); \
    if (got_ != DT_STORE_OK && got_ < 0) \
        CHECK(err[0] != '\0', "%s failed without a message", #call); \
} while (0)

#define OK(call) EXPECT(call, DT_STORE_OK)
#define E sizeof err

#endif
