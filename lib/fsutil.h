/*
 * fsutil.h — small helpers every layer shares: directories (make a path,
 * sync one, remove a tree without following links), a local index file
 * read and removed in one go, and the hex and uuid text forms of bytes.
 */
#ifndef GLIDEFS_FSUTIL_H
#define GLIDEFS_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Read the regular file path whole (at most max bytes) into *buf (malloc'd,
 * *len bytes; also on an error after the read, NULL before) and unlink it,
 * whatever the read gave: an index taken once is never taken again (the
 * cache's and the journal's, cache_index.h and dirty_index.h). 0, -ENOENT,
 * -EINVAL (not a regular file, too large, shorter than it said), or -errno;
 * a failed unlink is an error too. */
int gfs_file_take(const char *path, size_t max, uint8_t **buf, size_t *len);

/* Write n bytes to path through path.tmp and a rename (mode 0600), so a
 * reader finds the old file or the whole new one. sync: fsync the file
 * before the rename and its directory after (a power cut keeps it). 0 or
 * -errno (the tmp file removed). */
int gfs_file_put(const char *path, const void *buf, size_t n, int sync);

/* mkdir -p path (each missing directory made with mode). sync: fsync the
 * parent of every directory made, so the path survives a power cut. */
int gfs_mkdir_p(const char *path, mode_t mode, int sync);

/* fsync a directory (its entries: a rename or create in it). Best effort. */
void gfs_fsync_dir(const char *dir);

/* fsync the directory holding path. Best effort. */
void gfs_fsync_parent(const char *path);

/* rm -r path, never following a symbolic link (one is removed, not what it
 * names). An entry gone meanwhile is no error. 0 or -errno (-ENOENT: path
 * itself does not exist). */
int gfs_rm_tree(const char *path);

/* The value of hex digit c (either case), -1 if c is none. */
int gfs_hexval(int c);

/* A uuid from its text: 32 lowercase hex digits, dashes anywhere ignored.
 * -EINVAL otherwise. */
int gfs_uuid_parse(const char *s, uint8_t out[16]);
/* The 8-4-4-4-12 lowercase form (36 characters and a NUL). */
void gfs_uuid_format(const uint8_t u[16], char out[40]);
/* A random version-4 uuid. -EIO when the system has no randomness. */
int gfs_uuid_new(uint8_t out[16]);

#endif
