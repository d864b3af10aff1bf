/* fsutil.h — small file-system helpers shared by the engine. */
#ifndef DT_FSUTIL_H
#define DT_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Returned instead of -1 by writers when the file system is full: ENOSPC or EDQUOT from the
 * kernel, or less free space than a large write needs plus the configured reserve
 * (fs_check_free). Callers report it as error.code "disk_full" (HTTP 507 for the API). */
#define FS_NO_SPACE (-2)

/* mkdir -p: creates path and its parents (mode 0755). Returns 0, or -1 with a message. */
int fs_mkdirs(const char *path, char *err, size_t errlen);
/* 1 when path exists (any type), else 0. */
int fs_exists(const char *path);
/* Hex SHA-256 (65 bytes with NUL) of a file's bytes. Returns 0 or -1 with a message. */
int fs_sha256_file(const char *path, char out_hex[65], char *err, size_t errlen);
/* The size in bytes of the file at path, or 0 when it cannot be read. */
int64_t fs_file_size(const char *path);
/* Hex SHA-256 of a memory buffer. */
void fs_sha256_hex(const void *data, size_t len, char out_hex[65]);

/* 1 when errnum says the file system (or the writer's disk quota) is full: ENOSPC, EDQUOT. */
int fs_errno_no_space(int errnum);
/* Writes all len bytes of buf to fd, retrying short writes and EINTR. Returns 0, FS_NO_SPACE
 * (the disk is full), or -1 (another error); errno says which in both cases. */
int fs_write_all(int fd, const void *buf, size_t len);
/* Bytes an unprivileged writer can still use on the file system holding path (statvfs
 * f_bavail x f_frsize), or -1 with errno set. */
int64_t fs_free_bytes(const char *path);
/* The free-space guard before a large write into dir: the free bytes must cover need + reserve.
 * what names the write for the message ("a checkpoint", "the upload"); reserve_opt names the
 * option that sets the reserve ("--min-free-mb"). Returns 0; FS_NO_SPACE with a message giving
 * the free space, the need and the reserve (not dir: the message may reach API clients); or -1
 * with a message when dir cannot be examined. */
int fs_check_free(const char *dir, const char *what, uint64_t need, uint64_t reserve,
                  const char *reserve_opt, char *err, size_t errlen);

#endif
