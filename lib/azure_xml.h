/*
 * azure_xml.h — the Azure Blob service XML documents the azure:// backend
 * reads, with libxml2 (never string search): List Blobs results
 * (EnumerationResults) and error bodies (Error), and the one it writes, the
 * block list of Put Block List.
 *
 * Every parser faces the network and follows the rules of s3_xml.h: input is
 * bounded (GFS_AZ_XML_MAX), parsed with XML_PARSE_NONET and without entity
 * substitution, a document carrying a DOCTYPE is refused, libxml2 never
 * prints (its first message about a document goes to log, at debug level for
 * error bodies, warn for listings), and every field is validated (lengths,
 * integers, names, the presence of NextMarker). Malformed input is -EBADMSG.
 * libxml2 must have been initialised (xmlInitParser) before these are called
 * from several threads; the backend does it once in its open.
 */
#ifndef GLIDEFS_AZURE_XML_H
#define GLIDEFS_AZURE_XML_H

#include <stddef.h>
#include <stdint.h>

struct gfs_log;

#define GFS_AZ_XML_MAX (8u << 20)     /* largest XML body accepted */
#define GFS_AZ_NAME_MAX 1024u         /* Azure's limit on a blob name, in bytes */
#define GFS_AZ_MARKER_MAX 4096u       /* longest NextMarker accepted */
#define GFS_AZ_LIST_MAX 5000u         /* entries per page (Azure's maximum) */
#define GFS_AZ_BLOCKS_MAX 50000u      /* blocks in one block blob */

/* An Azure error body: <Error><Code/><Message/>...</Error>. Fields are
 * truncated to fit, control characters replaced, so they are safe to log. */
struct gfs_az_error {
    char code[64];
    char message[256];
};

/* 0, or -EBADMSG when the body is not a well-formed Azure error (out is then
 * all empty strings). */
int gfs_az_xml_parse_error(const char *buf, size_t len, struct gfs_az_error *out,
                           const struct gfs_log *log);

struct gfs_az_list_entry {
    char *name;    /* full blob name, 1..GFS_AZ_NAME_MAX bytes, no control characters */
    uint64_t size; /* Content-Length */
};

struct gfs_az_list_page {
    struct gfs_az_list_entry *entries;
    size_t n;
    char *next_marker; /* NULL on the last page (NextMarker empty) */
};

/* Parse an EnumerationResults (List Blobs, flat). NextMarker must be
 * present (empty on the last page): a listing cut short must never look
 * complete. On error out is left empty. */
int gfs_az_xml_parse_list(const char *buf, size_t len, struct gfs_az_list_page *out,
                          const struct gfs_log *log);
void gfs_az_list_page_clear(struct gfs_az_list_page *p);

/* The body of Put Block List: <BlockList><Latest>id</Latest>...</BlockList>
 * for n (1..GFS_AZ_BLOCKS_MAX) base64 block ids. *out is malloc'd, not
 * NUL-terminated. */
int gfs_az_xml_build_block_list(const char *const *ids, size_t n, char **out, size_t *outlen);

#endif
