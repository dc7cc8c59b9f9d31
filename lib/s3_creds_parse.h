/*
 * s3_creds_parse.h — the formats the S3 credential sources answer in, parsed
 * and validated without I/O (so each has known-answer tests and a fuzz
 * target, fuzz/fuzz_s3_creds.c): the AWS shared credentials and config files
 * (INI), the JSON of the EC2 instance metadata service and of the ECS/EKS
 * container endpoint, the role list of the instance metadata, and ISO-8601
 * expiry times. The XML of STS AssumeRoleWithWebIdentity is parsed in
 * s3_xml.c, with the other XML, into the same struct.
 *
 * Every parser bounds its input, refuses NUL bytes and control characters,
 * checks every field it returns (lengths, character sets, an expiry that is
 * a real time), and never puts a secret into the "why" text it writes.
 */
#ifndef GLIDEFS_S3_CREDS_PARSE_H
#define GLIDEFS_S3_CREDS_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define GFS_CREDS_AKID_MAX 128u
#define GFS_CREDS_SECRET_MAX 256u
#define GFS_CREDS_TOKEN_MAX 16384u
#define GFS_CREDS_FILE_MAX (1u << 20)      /* shared credentials / config file */
#define GFS_CREDS_ANSWER_MAX (64u * 1024u) /* an answer of IMDS, ECS or STS */
#define GFS_CREDS_ROLE_MAX 128u

/* One set of keys as a source gave it. Strings malloc'd (NULL: absent);
 * gfs_creds_parsed_clear zeroes the secret and token before freeing. */
struct gfs_creds_parsed {
    char *akid;
    char *secret;
    char *token;
    int64_t expires_ms; /* Unix time in ms; 0: the source gave none */
};

void gfs_creds_parsed_clear(struct gfs_creds_parsed *p);

/* Fields present and well-formed. strict (answers from the network): the
 * access key id is 16..128 letters and digits, secret and token printable
 * ASCII without spaces, an expiry is required and must be later than now_ms.
 * Not strict (what an operator wrote, for any S3-compatible store): no
 * control characters, spaces or '/' in the key id, no control characters in
 * the secret or token; an expiry, if any, later than now_ms. -EINVAL with
 * why naming the field (never its value). */
int gfs_creds_check(const struct gfs_creds_parsed *p, int strict, int64_t now_ms, char *why,
                    size_t wl);

/* "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)" (UTC) -> ms since the epoch.
 * 0 or -EINVAL (any other form, an impossible date, years before 1970 or
 * after 9999). */
int gfs_creds_parse_time(const char *s, size_t n, int64_t *ms);

/* The JSON of IMDS (.../iam/security-credentials/ROLE) and of the container
 * endpoint: {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}, and
 * "Code" if present must be "Success". At most GFS_CREDS_ANSWER_MAX bytes,
 * duplicate names refused. Checked strictly (gfs_creds_check). 0 or
 * -EBADMSG / -EINVAL with why; -ENOMEM. */
int gfs_creds_parse_json(const char *buf, size_t len, int64_t now_ms,
                         struct gfs_creds_parsed *out, char *why, size_t wl);

/* The first line of IMDS's role list (.../iam/security-credentials/): an
 * IAM role name, 1..128 of [A-Za-z0-9+=,.@_-]. 0 or -EBADMSG. */
int gfs_creds_role_name(const char *buf, size_t len, char *out, size_t outlen);

/* What one profile of a shared file holds. */
struct gfs_ini_profile {
    int found;                    /* the section exists */
    struct gfs_creds_parsed keys; /* aws_access_key_id, aws_secret_access_key,
                                     aws_session_token, as given (not checked) */
    char unsupported[160];        /* keys that would give credentials in an AWS SDK
                                     and that GlideFS does not act on, comma-separated
                                     (role_arn, credential_process, sso_*, ...) */
};

/* Find profile in an AWS shared file: the credentials file
 * (config_file 0: section [NAME]) or the config file (1: [profile NAME], or
 * [default] for "default"). The file must parse as a whole, as the AWS
 * SDKs require: a line outside any section, a line that is not a section,
 * comment, key = value or an indented continuation, a repeated section of
 * the profile or a repeated key in it, a NUL byte, a line longer than 16 KiB
 * or a file over GFS_CREDS_FILE_MAX is -EBADMSG with why naming the line.
 * Comments are whole lines starting with '#' or ';'. Key names are
 * case-insensitive, values trimmed. gfs_creds_parsed_clear(&out->keys)
 * when done. */
int gfs_creds_parse_ini(const char *buf, size_t len, const char *profile, int config_file,
                        struct gfs_ini_profile *out, char *why, size_t wl);

#endif
