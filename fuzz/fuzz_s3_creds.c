/*
 * fuzz_s3_creds.c — libFuzzer target for what the S3 credential sources and
 * an S3 store answer about credentials and regions: the first byte picks
 * the parser, the rest is its input.
 *   0  IMDS / container JSON       (gfs_creds_parse_json)
 *   1  STS AssumeRoleWithWebIdentity XML (gfs_sts_xml_parse_credentials)
 *   2  shared credentials file, profile "default"  (gfs_creds_parse_ini)
 *   3  shared config file, profile "prod"
 *   4  an expiry time and an IMDS role list (gfs_creds_parse_time,
 *      gfs_creds_role_name)
 *   5  an S3 error body naming a region / endpoint (gfs_s3_xml_parse_error)
 * Whatever a parser accepts must hold what its header promises: keys that
 * pass gfs_creds_check, a region of a-z 0-9 '-', a time within the years
 * allowed, a role of the allowed characters.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "s3_creds_parse.h"
#include "s3_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS INT64_C(1700000000000)

static void no_control(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        xmlInitParser();
        inited = 1;
    }
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char why[256];
    struct gfs_creds_parsed p;
    switch (data[0] % 6) {
    case 0:
        if (gfs_creds_parse_json(in, n, NOW_MS, &p, why, sizeof(why)) == 0) {
            if (gfs_creds_check(&p, 1, NOW_MS, why, sizeof(why)) != 0)
                abort();
            gfs_creds_parsed_clear(&p);
        }
        break;
    case 1: {
        struct gfs_s3_error e;
        int rc = gfs_sts_xml_parse_credentials(in, n, &p, &e, NULL);
        if (rc == 0) {
            if (!p.akid || !p.secret || !p.token || p.expires_ms <= 0)
                abort();
            no_control(p.akid);
            no_control(p.secret);
            no_control(p.token);
            gfs_creds_check(&p, 1, NOW_MS, why, sizeof(why));
            gfs_creds_parsed_clear(&p);
        } else if (rc == 1) {
            if (!e.code[0])
                abort();
            no_control(e.message);
            no_control(e.request_id);
        } else if (p.akid || p.secret || p.token) {
            abort();
        }
        break;
    }
    case 2:
    case 3: {
        struct gfs_ini_profile ip;
        int rc = gfs_creds_parse_ini(in, n, data[0] % 6 == 2 ? "default" : "prod",
                                     data[0] % 6 == 3, &ip, why, sizeof(why));
        if (rc == 0) {
            if (!ip.found && (ip.keys.akid || ip.keys.secret || ip.keys.token))
                abort();
            /* values come as written; what passes the check is clean */
            if (gfs_creds_check(&ip.keys, 0, NOW_MS, why, sizeof(why)) == 0) {
                no_control(ip.keys.akid);
                no_control(ip.keys.secret);
                no_control(ip.keys.token);
                if (strpbrk(ip.keys.akid, " \t/"))
                    abort();
            }
            gfs_creds_parsed_clear(&ip.keys);
        } else if (ip.keys.akid || ip.keys.secret) {
            abort();
        }
        break;
    }
    case 4: {
        int64_t ms = 0;
        if (gfs_creds_parse_time(in, n, &ms) == 0 &&
            (ms < 0 || ms >= INT64_C(253402300800000) + 1000))
            abort();
        char role[GFS_CREDS_ROLE_MAX + 1];
        if (gfs_creds_role_name(in, n, role, sizeof(role)) == 0) {
            size_t rl = strlen(role);
            if (rl == 0 || rl > GFS_CREDS_ROLE_MAX || strpbrk(role, "/ \t\r\n?#%"))
                abort();
        }
        break;
    }
    default: {
        struct gfs_s3_error e;
        if (gfs_s3_xml_parse_error(in, n, &e, NULL) == 0) {
            for (const char *s = e.region; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
                    abort();
            if (strlen(e.region) > 32 || strpbrk(e.endpoint, "/?#@ "))
                abort();
            no_control(e.message);
        }
        break;
    }
    }
    return 0;
}
