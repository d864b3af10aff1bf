/* errmsg.h — the engine's one way to report a user-facing error into a caller's buffer. */
#ifndef DT_ERRMSG_H
#define DT_ERRMSG_H

#include <stddef.h>

/* printf into err (errlen bytes, always terminated); does nothing when err is NULL or errlen 0. */
void dt_errorf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
