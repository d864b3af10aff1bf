/* fsutil.h — small file-system helpers shared by the engine. */
#ifndef DT_FSUTIL_H
#define DT_FSUTIL_H

#include <stddef.h>

/* mkdir -p: creates path and its parents (mode 0755). Returns 0, or -1 with a message. */
int fs_mkdirs(const char *path, char *err, size_t errlen);
/* 1 when path exists (any type), else 0. */
int fs_exists(const char *path);
/* Hex SHA-256 (65 bytes with NUL) of a file's bytes. Returns 0 or -1 with a message. */
int fs_sha256_file(const char *path, char out_hex[65], char *err, size_t errlen);
/* Hex SHA-256 of a memory buffer. */
void fs_sha256_hex(const void *data, size_t len, char out_hex[65]);

#endif
