/* ingest_tree.c — removing an upload's directory tree (used when validation fails). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>

#include "ingest.h"

static int ingest_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

int ingest_remove_tree(const char *path) {
    return nftw(path, ingest_remove_entry, 32, FTW_DEPTH | FTW_PHYS) ? -1 : 0;
}
