/*
 * s3_creds.h — the credentials of an s3:// store: where they come from (the
 * chain a production node uses, in the AWS SDKs' order) and keeping the
 * expiring ones fresh while many threads sign requests.
 *
 * The chain, first match wins (each step is skipped when not configured):
 *  1. the config: storage.access_key_id + storage.secret_access_key
 *     (+ storage.session_token);
 *  2. the environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *     (+ AWS_SESSION_TOKEN);
 *  3. web identity (EKS IRSA, any OIDC): AWS_WEB_IDENTITY_TOKEN_FILE +
 *     AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME) -> STS AssumeRoleWithWebIdentity,
 *     an unsigned POST to https://sts.REGION.amazonaws.com (AWS_ENDPOINT_URL_STS
 *     overrides); the token file is read again at each refresh;
 *  4. the shared files, profile AWS_PROFILE (default "default"): static keys
 *     (aws_access_key_id, aws_secret_access_key, aws_session_token) from
 *     [PROFILE] of AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), else
 *     [profile PROFILE] of AWS_CONFIG_FILE (~/.aws/config). A profile named
 *     by AWS_PROFILE must exist and hold keys; role_arn, credential_process
 *     and sso_* are not acted on (an error when the profile was named);
 *  5. the ECS / EKS Pod Identity container endpoint:
 *     AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on http://169.254.170.2) or
 *     AWS_CONTAINER_CREDENTIALS_FULL_URI (https, or http to a loopback or the
 *     ECS / EKS agent address), with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
 *     (read at each refresh) or AWS_CONTAINER_AUTHORIZATION_TOKEN;
 *  6. the EC2 instance metadata service, IMDSv2 only (a PUT for a session
 *     token first), at AWS_EC2_METADATA_SERVICE_ENDPOINT (default
 *     http://169.254.169.254), unless AWS_EC2_METADATA_DISABLED=true; timeout
 *     AWS_METADATA_SERVICE_TIMEOUT seconds (1) and
 *     AWS_METADATA_SERVICE_NUM_ATTEMPTS (1), so a machine that is not on EC2
 *     learns that within a second; never through an HTTP proxy.
 * Steps 1, 2 and 4 are read at gfs_s3_creds_new (a malformed file or a
 * half-given pair is an error there, naming the step); 3, 5 and 6 are asked
 * at the first request (no network I/O at open), and when none of them is
 * configured and the instance metadata is disabled, new() fails with the
 * list of what it tried.
 *
 * Expiring credentials (3, 5, 6) are fetched again before they expire:
 * from refresh_ahead_s before (at most half their lifetime) the first thread
 * that needs them fetches while the others keep signing with the current
 * ones; a failed fetch keeps them until they expire (logged at WARN, tried
 * again with backoff); no request is ever signed with keys less than a
 * short margin (a fifth of the refresh time, at most a minute) from expiry:
 * such a request waits for the fetch and fails (-EACCES) if it fails.
 * Secrets are never logged; access key ids are.
 */
#ifndef GLIDEFS_S3_CREDS_H
#define GLIDEFS_S3_CREDS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct gfs_log;
struct gfs_s3_creds;

/* One set of keys, immutable while anyone holds a reference. */
struct gfs_s3_keys {
    char *akid;
    char *secret;
    char *token;        /* NULL: none */
    int64_t expires_ms; /* Unix time in ms; 0: does not expire */
    int64_t fetched_ms;
    const char *source; /* static: "config", "environment", "web identity", ... */
    atomic_int refs;    /* gfs_s3_keys_put */
};

struct gfs_s3_creds_opts {
    const char *akid, *secret, *token; /* storage.*; NULL or "" when unset */
    const char *region;                /* for STS's regional endpoint */
    const char *ca_bundle;             /* https credential endpoints (NULL: system CAs) */
    int tls_verify;
    int refresh_ahead_s;               /* storage.credential_refresh_s; <= 0: 300 */
    struct gfs_log *log;
};

/* 0, or -EINVAL (no source, or a source given badly: err says which), -EIO
 * (a shared file that exists but cannot be read), -ENOMEM. */
int gfs_s3_creds_new(const struct gfs_s3_creds_opts *o, struct gfs_s3_creds **out, char *err,
                     size_t errlen);
void gfs_s3_creds_free(struct gfs_s3_creds *c);

/* The keys to sign with now (a reference: gfs_s3_keys_put when done),
 * fetched or refreshed first when due. -EACCES with why when there are
 * none that are still valid; -ENOMEM. Thread-safe. */
int gfs_s3_creds_get(struct gfs_s3_creds *c, struct gfs_s3_keys **out, char *why, size_t wl);
void gfs_s3_keys_put(struct gfs_s3_keys *k);

/* The store refused k as expired (ExpiredToken): unless k already was
 * replaced, the next get fetches anew. No effect on keys that do not
 * expire. 1 if a fetch will happen, else 0. */
int gfs_s3_creds_expired(struct gfs_s3_creds *c, const struct gfs_s3_keys *k);

/* Where the keys come from, for messages ("AWS_ACCESS_KEY_ID", "the EC2
 * instance metadata at http://169.254.169.254", ...). */
const char *gfs_s3_creds_describe(const struct gfs_s3_creds *c);

#endif
