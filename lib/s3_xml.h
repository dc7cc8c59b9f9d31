/*
 * s3_xml.h — the S3 XML documents the s3:// backend reads and writes, with
 * libxml2 (never string search): ListObjectsV2 results, error bodies,
 * DeleteObjects requests and results; and STS's AssumeRoleWithWebIdentity
 * answer (a credential source of the s3:// backend, s3_creds.c).
 *
 * Every parser faces the network: input is bounded (GFS_S3_XML_MAX), parsed
 * with XML_PARSE_NONET and without entity substitution, a document carrying
 * a DOCTYPE (entity definitions, external subsets: XXE, "billion laughs") is
 * refused, and every field is validated (lengths, integers, coherence of
 * IsTruncated and NextContinuationToken). Malformed input is -EBADMSG.
 * libxml2 never prints: its first message about a document goes to log
 * (NULL: nowhere), at debug level for error bodies (often not XML at all),
 * warn for the others; see s3_xml.c.
 * libxml2 must have been initialised (xmlInitParser) before these are called
 * from several threads; the backend does it once in its open.
 */
#ifndef GLIDEFS_S3_XML_H
#define GLIDEFS_S3_XML_H

#include <stddef.h>
#include <stdint.h>

struct gfs_log;

#define GFS_S3_XML_MAX (8u << 20)      /* largest XML body accepted */
#define GFS_S3_KEY_MAX 1024u           /* S3's limit on a key, in bytes */
#define GFS_S3_TOKEN_MAX 4096u         /* longest continuation token accepted */
#define GFS_S3_LIST_MAX_KEYS 1000u     /* entries per page (we ask for 1000) */
#define GFS_S3_DELETE_MAX_KEYS 1000u   /* keys per DeleteObjects request */

/* An S3 error body: <Error><Code/><Message/><RequestId/></Error>. Fields are
 * truncated to fit, control characters replaced, so they are safe to log.
 * Region (AuthorizationHeaderMalformed, PermanentRedirect) is kept only
 * when it looks like a region name (a-z 0-9 '-', at most 32), Endpoint
 * (PermanentRedirect) only when it looks like a host name. */
struct gfs_s3_error {
    char code[64];
    char message[256];
    char request_id[128];
    char region[40];
    char endpoint[256];
};

/* 0, or -EBADMSG when the body is not a well-formed S3 error (out is then
 * all empty strings). */
int gfs_s3_xml_parse_error(const char *buf, size_t len, struct gfs_s3_error *out,
                           const struct gfs_log *log);

struct gfs_s3_list_entry {
    char *key;     /* full object key, 1..GFS_S3_KEY_MAX bytes, no control characters */
    uint64_t size;
};

struct gfs_s3_list_page {
    struct gfs_s3_list_entry *entries;
    size_t n;
    int truncated;      /* IsTruncated */
    char *next_token;   /* NextContinuationToken; non-NULL iff truncated */
};

/* Parse a ListBucketResult (ListObjectsV2). On error out is left empty. */
int gfs_s3_xml_parse_list(const char *buf, size_t len, struct gfs_s3_list_page *out,
                          const struct gfs_log *log);
void gfs_s3_list_page_clear(struct gfs_s3_list_page *p);

/* Build a DeleteObjects body (<Delete><Quiet>true</Quiet><Object><Key>...).
 * 1..GFS_S3_DELETE_MAX_KEYS keys, each valid UTF-8 without control
 * characters (-EINVAL otherwise). *out is malloc'd, not NUL-terminated. */
int gfs_s3_xml_build_delete(const char *const *keys, size_t n, char **out, size_t *outlen);

struct gfs_s3_delete_result {
    size_t deleted;                /* <Deleted> entries (none in quiet mode) */
    size_t errors;                 /* <Error> entries */
    char first_error_key[GFS_S3_KEY_MAX + 1];
    struct gfs_s3_error first_error;
};

int gfs_s3_xml_parse_delete_result(const char *buf, size_t len,
                                   struct gfs_s3_delete_result *out, const struct gfs_log *log);

struct gfs_creds_parsed;

/* STS's answer to AssumeRoleWithWebIdentity: 0 and out filled from
 * <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>
 * <Credentials> (AccessKeyId, SecretAccessKey, SessionToken, Expiration,
 * each exactly once; not yet checked: gfs_creds_check); 1 when it is an
 * <ErrorResponse> (err filled: Code, Message, RequestId); -EBADMSG for
 * anything else; -ENOMEM. */
int gfs_sts_xml_parse_credentials(const char *buf, size_t len, struct gfs_creds_parsed *out,
                                  struct gfs_s3_error *err, const struct gfs_log *log);

#endif
