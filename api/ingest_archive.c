/* ingest_archive.c — safe extraction of an uploaded tar or zip archive with libarchive.
 *
 * libarchive only reads: every member is checked (path, type, limits) and then written by hand
 * with O_CREAT|O_EXCL|O_NOFOLLOW, so nothing an archive says can place a file outside dest_dir,
 * follow a link, or overwrite what an earlier member wrote. We never create links ourselves, so
 * a path built from checked components under dest_dir can only resolve inside it.
 */
#include "ingest.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "fsutil.h"

#define INGEST_DEFAULT_MAX_BYTES ((int64_t)8 << 30)
#define INGEST_DEFAULT_MAX_ENTRIES ((int64_t)1000000)
#define INGEST_PATH_MAX 4096
#define INGEST_IO_BYTES (1 << 16)
/* libarchive's errno for "not a format it reads" (ARCHIVE_ERRNO_FILE_FORMAT, not exported). */
#ifdef EFTYPE
#define INGEST_ERRNO_FILE_FORMAT EFTYPE
#else
#define INGEST_ERRNO_FILE_FORMAT EILSEQ
#endif

typedef struct {
    struct archive *a;
    const char *dest;      /* dest_dir as given */
    int64_t max_bytes, max_entries;
    int64_t bytes;         /* file bytes written so far */
    int64_t entries;       /* members seen so far, junk included */
    int64_t files;         /* regular files written */
    char *io;              /* (INGEST_IO_BYTES) copy buffer */
    char *err;
    size_t errlen;
} ingest_extractor;

/* ---- member names ---------------------------------------------------------------------------- */

/* Normalises an archive member name into rel (components joined by single slashes, "." and
 * empty components dropped). Returns 1 with rel set, 0 when the name is the archive root itself
 * ("./"), or DT_INGEST_INVALID with a message for an absolute, ".."-bearing or overlong name. */
static int ingest_member_path(const char *name, char *rel, size_t cap, char *err, size_t errlen) {
    if (name[0] == '/') {
        dt_errorf(err, errlen, "archive member '%s' has an absolute path; refused (members must "
                  "be relative, e.g. cat/0001.png)", name);
        return DT_INGEST_INVALID;
    }
    size_t len = 0;
    const char *p = name;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            dt_errorf(err, errlen, "archive member '%s' has a '..' path component; refused", name);
            return DT_INGEST_INVALID;
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (len + (len > 0) + n + 1 > cap) {
                dt_errorf(err, errlen, "archive member '%.200s...' has too long a path", name);
                return DT_INGEST_INVALID;
            }
            if (len > 0) rel[len++] = '/';
            memcpy(rel + len, p, n);
            len += n;
        }
        p += n;
        if (*p == '/') p++;
    }
    rel[len] = '\0';
    return len > 0;
}

/* 1 for files that archivers on macOS and Windows add and that are never part of a dataset:
 * anything under "__MACOSX/", AppleDouble "._*" files, ".DS_Store" and "Thumbs.db". */
static int ingest_is_junk(const char *rel) {
    const char *base = rel;
    for (const char *slash; (slash = strchr(base, '/')) != NULL; base = slash + 1)
        if (slash - base == 8 && strncmp(base, "__MACOSX", 8) == 0) return 1;
    if (strcmp(base, "__MACOSX") == 0) return 1;
    return strncmp(base, "._", 2) == 0 || strcmp(base, ".DS_Store") == 0 ||
           strcasecmp(base, "Thumbs.db") == 0;
}

/* What is wrong with the member's type, or NULL for a folder or a regular file. */
static const char *ingest_refused_type(struct archive_entry *e) {
    if (archive_entry_hardlink(e)) return "a hard link";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG: return NULL;
    case AE_IFDIR: return NULL;
    case AE_IFLNK: return "a symbolic link";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO";
    case AE_IFSOCK: return "a socket";
    default: return "not a regular file or folder";
    }
}

/* ---- writing --------------------------------------------------------------------------------- */

/* Creates the folder path (mode 0755) unless it exists as a folder. A non-folder in the way is
 * the archive's fault (a file and a folder with one name); anything else is the server's. */
static int ingest_mkdir(const char *path, const char *member, char *err, size_t errlen) {
    if (mkdir(path, 0755) == 0) return DT_INGEST_OK;
    int e = errno;
    struct stat sb;
    if (e == EEXIST && lstat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return DT_INGEST_OK;
        dt_errorf(err, errlen, "archive member '%s' needs a folder where an earlier member is a "
                  "file; refused", member);
        return DT_INGEST_INVALID;
    }
    if (e == ENAMETOOLONG) {
        dt_errorf(err, errlen, "archive member '%s' has too long a name", member);
        return DT_INGEST_INVALID;
    }
    dt_errorf(err, errlen, "cannot create a folder for archive member '%s': %s", member,
              strerror(e));
    return fs_errno_no_space(e) ? DT_INGEST_NO_SPACE : DT_INGEST_ERROR;
}

/* Creates every folder of full (dest_dir + "/" + rel) below dest_dir, excluding the last
 * component. full is modified temporarily. */
static int ingest_make_parents(char *full, size_t dest_len, const char *member, char *err,
                               size_t errlen) {
    for (char *p = full + dest_len + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        int rc = ingest_mkdir(full, member, err, errlen);
        *p = '/';
        if (rc != DT_INGEST_OK) return rc;
    }
    return DT_INGEST_OK;
}

/* Writes all of buf to fd. Returns 0, or -1 with errno set. */
static int ingest_write_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Copies the current member's data into fd, counting it against the byte limit. */
static int ingest_copy_data(ingest_extractor *x, int fd, const char *member) {
    for (;;) {
        la_ssize_t n = archive_read_data(x->a, x->io, INGEST_IO_BYTES);
        if (n == 0) return DT_INGEST_OK;
        if (n < 0) {
            dt_errorf(x->err, x->errlen, "archive member '%s' cannot be read (corrupt or "
                      "truncated archive?): %s", member, archive_error_string(x->a));
            return DT_INGEST_INVALID;
        }
        x->bytes += n;
        if (x->bytes > x->max_bytes) {
            dt_errorf(x->err, x->errlen, "the archive expands to more than the limit of %lld "
                      "bytes (reached at member '%s')", (long long)x->max_bytes, member);
            return DT_INGEST_TOO_LARGE;
        }
        if (ingest_write_all(fd, x->io, (size_t)n) != 0) {
            int e = errno;
            dt_errorf(x->err, x->errlen, "cannot write archive member '%s': %s", member,
                      strerror(e));
            return fs_errno_no_space(e) ? DT_INGEST_NO_SPACE : DT_INGEST_ERROR;
        }
    }
}

/* Writes the current member, a regular file, to full (which must not exist yet). */
static int ingest_write_file(ingest_extractor *x, const char *full, const char *member) {
    int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST || e == ENAMETOOLONG || e == ELOOP) {
            dt_errorf(x->err, x->errlen, "archive member '%s' %s; refused", member,
                      e == ENAMETOOLONG ? "has too long a name"
                                        : "appears twice in the archive (or is also a folder)");
            return DT_INGEST_INVALID;
        }
        dt_errorf(x->err, x->errlen, "cannot create archive member '%s': %s", member,
                  strerror(e));
        return fs_errno_no_space(e) ? DT_INGEST_NO_SPACE : DT_INGEST_ERROR;
    }
    int rc = ingest_copy_data(x, fd, member);
    if (close(fd) != 0 && rc == DT_INGEST_OK) {
        int e = errno;
        dt_errorf(x->err, x->errlen, "cannot write archive member '%s': %s", member,
                  strerror(e));
        rc = fs_errno_no_space(e) ? DT_INGEST_NO_SPACE : DT_INGEST_ERROR;
    }
    if (rc == DT_INGEST_OK) x->files++;
    return rc;
}

/* Checks one member and writes it (folder or file) or skips it (root entry, junk). */
static int ingest_member(ingest_extractor *x, struct archive_entry *e) {
    if (++x->entries > x->max_entries) {
        dt_errorf(x->err, x->errlen, "the archive has more than the limit of %lld members",
                  (long long)x->max_entries);
        return DT_INGEST_TOO_LARGE;
    }
    const char *name = archive_entry_pathname(e);
    if (!name) name = archive_entry_pathname_utf8(e);
    if (!name) {
        dt_errorf(x->err, x->errlen, "archive member number %lld has an unreadable name",
                  (long long)x->entries);
        return DT_INGEST_INVALID;
    }
    char rel[INGEST_PATH_MAX];
    int named = ingest_member_path(name, rel, sizeof rel, x->err, x->errlen);
    if (named < 0) return named;
    const char *bad_type = ingest_refused_type(e);
    if (bad_type) {
        dt_errorf(x->err, x->errlen, "archive member '%s' is %s; refused (only folders and "
                  "regular files are accepted)", name, bad_type);
        return DT_INGEST_INVALID;
    }
    if (named == 0 || ingest_is_junk(rel)) return DT_INGEST_OK;
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size > x->max_bytes - x->bytes) {
        dt_errorf(x->err, x->errlen, "the archive expands to more than the limit of %lld bytes "
                  "(reached at member '%s', %lld bytes)", (long long)x->max_bytes, name,
                  (long long)size);
        return DT_INGEST_TOO_LARGE;
    }
    char full[2 * INGEST_PATH_MAX];
    size_t dest_len = strlen(x->dest), rel_len = strlen(rel);
    if (dest_len + 1 + rel_len >= sizeof full) {
        dt_errorf(x->err, x->errlen, "archive member '%.200s...' has too long a path", name);
        return DT_INGEST_INVALID;
    }
    memcpy(full, x->dest, dest_len);
    full[dest_len] = '/';
    memcpy(full + dest_len + 1, rel, rel_len + 1);
    int rc = ingest_make_parents(full, dest_len, name, x->err, x->errlen);
    if (rc != DT_INGEST_OK) return rc;
    if (archive_entry_filetype(e) == AE_IFDIR) return ingest_mkdir(full, name, x->err, x->errlen);
    return ingest_write_file(x, full, name);
}

/* ---- the archive ----------------------------------------------------------------------------- */

/* Classifies a failure of libarchive to open the archive or read a header: the upload file
 * missing or unreadable is the server's failure; content that no reader recognises is not an
 * archive; anything else is a damaged (often truncated) archive. */
static int ingest_read_failure(ingest_extractor *x) {
    int e = archive_errno(x->a);
    if (e == ENOENT || e == EACCES || e == EIO || e == ENOMEM) {
        dt_errorf(x->err, x->errlen, "cannot read the uploaded file: %s",
                  archive_error_string(x->a));
        return DT_INGEST_ERROR;
    }
    if (e == INGEST_ERRNO_FILE_FORMAT && x->entries == 0)
        dt_errorf(x->err, x->errlen, "not a tar or zip archive (optionally gzip, bzip2 or xz "
                  "compressed)");
    else
        dt_errorf(x->err, x->errlen, "the archive is damaged or truncated (after %lld members): "
                  "%s", (long long)x->entries, archive_error_string(x->a));
    return DT_INGEST_INVALID;
}

/* Opens archive_path for reading: any compression filter, tar (every variant) or zip. Format
 * detection happens here, on the first block. */
static int ingest_open(ingest_extractor *x, const char *archive_path) {
    x->a = archive_read_new();
    if (!x->a) {
        dt_errorf(x->err, x->errlen, "out of memory opening the archive");
        return DT_INGEST_ERROR;
    }
    if (archive_read_support_filter_all(x->a) != ARCHIVE_OK ||
        archive_read_support_format_tar(x->a) != ARCHIVE_OK ||
        archive_read_support_format_zip(x->a) != ARCHIVE_OK) {
        dt_errorf(x->err, x->errlen, "cannot set up archive reading: %s",
                  archive_error_string(x->a));
        return DT_INGEST_ERROR;
    }
    if (archive_read_open_filename(x->a, archive_path, INGEST_IO_BYTES) != ARCHIVE_OK)
        return ingest_read_failure(x);
    return DT_INGEST_OK;
}

/* Reads every member into dest. */
static int ingest_read_all(ingest_extractor *x) {
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(x->a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) return ingest_read_failure(x);
        int rc = ingest_member(x, e);
        if (rc != DT_INGEST_OK) return rc;
    }
    if (x->files == 0) {
        dt_errorf(x->err, x->errlen, "the archive holds no files%s", x->entries > 0
                  ? " (only folders or macOS/Windows metadata)" : "; it is empty");
        return DT_INGEST_INVALID;
    }
    return DT_INGEST_OK;
}

/* Creates dest_dir (parents as needed); refuses one that already exists. */
static int ingest_create_dest(const char *dest, char *err, size_t errlen) {
    struct stat sb;
    if (lstat(dest, &sb) == 0) {
        dt_errorf(err, errlen, "destination %s already exists", dest);
        return DT_INGEST_ERROR;
    }
    char parent[INGEST_PATH_MAX];
    if (snprintf(parent, sizeof parent, "%s", dest) >= (int)sizeof parent) {
        dt_errorf(err, errlen, "destination path too long: %.200s...", dest);
        return DT_INGEST_ERROR;
    }
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (fs_mkdirs(parent, err, errlen) != 0) return DT_INGEST_ERROR;
    }
    /* mkdir itself is the claim: a concurrent upload to the same dest_dir loses here. */
    if (mkdir(dest, 0755) != 0) {
        dt_errorf(err, errlen, "cannot create %s: %s", dest, strerror(errno));
        return DT_INGEST_ERROR;
    }
    return DT_INGEST_OK;
}

/* Refuses an empty upload up front: libarchive would report it as an unknown format. */
static int ingest_check_upload(const char *archive_path, char *err, size_t errlen) {
    struct stat sb;
    if (stat(archive_path, &sb) != 0) {
        dt_errorf(err, errlen, "cannot open the uploaded file: %s", strerror(errno));
        return DT_INGEST_ERROR;
    }
    if (sb.st_size == 0) {
        dt_errorf(err, errlen, "the upload is empty (0 bytes); expected a tar or zip archive");
        return DT_INGEST_INVALID;
    }
    return DT_INGEST_OK;
}

int ingest_extract(const char *archive_path, const char *dest_dir, const dt_ingest_limits *limits,
                   int64_t *bytes_out, char *err, size_t errlen) {
    if (bytes_out) *bytes_out = 0;
    int rc = ingest_check_upload(archive_path, err, errlen);
    if (rc != DT_INGEST_OK) return rc;
    rc = ingest_create_dest(dest_dir, err, errlen);
    if (rc != DT_INGEST_OK) return rc;
    ingest_extractor x = {
        .dest = dest_dir,
        .max_bytes = limits && limits->max_bytes > 0 ? limits->max_bytes : INGEST_DEFAULT_MAX_BYTES,
        .max_entries = limits && limits->max_entries > 0 ? limits->max_entries
                                                         : INGEST_DEFAULT_MAX_ENTRIES,
        .err = err,
        .errlen = errlen,
    };
    x.io = malloc(INGEST_IO_BYTES);
    if (!x.io) {
        dt_errorf(err, errlen, "out of memory extracting the archive");
        rc = DT_INGEST_ERROR;
    } else {
        rc = ingest_open(&x, archive_path);
    }
    if (rc == DT_INGEST_OK) rc = ingest_read_all(&x);
    if (x.a) archive_read_free(x.a);
    free(x.io);
    if (rc != DT_INGEST_OK) {
        /* The extraction's failure is what the caller must see; a removal failure cannot
         * change the answer, so it is not reported on top of it. */
        (void)ingest_remove_tree(dest_dir);
        return rc;
    }
    if (bytes_out) *bytes_out = x.bytes;
    return DT_INGEST_OK;
}
