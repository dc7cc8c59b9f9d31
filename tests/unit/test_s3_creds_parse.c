/*
 * test_s3_creds_parse.c — the parsers of the S3 credential sources (shared
 * files, IMDS / container JSON, STS XML, expiry times, role names) on good
 * and hostile input, the region and endpoint of S3 error bodies, the
 * addressing rule (storage.addressing), and the x-amz-checksum-crc32c value.
 * No network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "objstore_s3.h"
#include "s3_creds_parse.h"
#include "s3_xml.h"

#define NOW_MS INT64_C(1700000000000) /* 2023-11-14T22:13:20Z */

/* ---- times ---- */

static void test_times(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms; /* -1: refused */
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2023-11-14T22:13:20Z", NOW_MS},
        {"2023-11-14T22:13:20.5Z", NOW_MS + 500},
        {"2023-11-14T22:13:20.123456789Z", NOW_MS + 123},
        {"2023-11-14T22:13:20+00:00", NOW_MS},
        {"2023-11-14t22:13:20z", NOW_MS},
        {"2024-02-29T00:00:00Z", INT64_C(1709164800000)},
        {"2023-02-29T00:00:00Z", -1},
        {"2023-13-01T00:00:00Z", -1},
        {"2023-11-31T00:00:00Z", -1},
        {"2023-11-14T24:00:00Z", -1},
        {"2023-11-14T22:13:20", -1},
        {"2023-11-14T22:13:20+01:00", -1},
        {"2023-11-14 22:13:20Z", -1},
        {"1969-12-31T23:59:59Z", -1},
        {"2023-11-14T22:13:20.Z", -1},
        {"2023-11-14T22:13:20.1234567890Z", -1},
        {"+2023-11-14T22:13:20Z", -1},
        {"", -1},
        {"2023-1a-14T22:13:20Z", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 0;
        int rc = gfs_creds_parse_time(cases[i].s, strlen(cases[i].s), &ms);
        if (cases[i].ms < 0) {
            if (rc != -EINVAL)
                fail_msg("%s: accepted as %lld", cases[i].s, (long long)ms);
        } else if (rc != 0 || ms != cases[i].ms) {
            fail_msg("%s: rc %d ms %lld, want %lld", cases[i].s, rc, (long long)ms,
                     (long long)cases[i].ms);
        }
    }
}

/* ---- JSON ---- */

#define GOOD_JSON                                                                            \
    "{\"Code\": \"Success\", \"LastUpdated\": \"2023-11-14T22:00:00Z\", \"Type\": "           \
    "\"AWS-HMAC\", \"AccessKeyId\": \"ASIAIMDSABCDEF123456\", \"SecretAccessKey\": "           \
    "\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\", \"Token\": \"IQoJb3JpZ2luX2VjE+/=\", "       \
    "\"Expiration\": \"2023-11-14T23:13:20Z\"}"

static void test_json(void **state)
{
    (void)state;
    struct gfs_creds_parsed p;
    char why[200] = "";
    assert_int_equal(gfs_creds_parse_json(GOOD_JSON, strlen(GOOD_JSON), NOW_MS, &p, why,
                                          sizeof(why)), 0);
    assert_string_equal(p.akid, "ASIAIMDSABCDEF123456");
    assert_string_equal(p.secret, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert_string_equal(p.token, "IQoJb3JpZ2luX2VjE+/=");
    assert_int_equal(p.expires_ms, NOW_MS + 3600000);
    gfs_creds_parsed_clear(&p);
    assert_null(p.secret);

    /* the container endpoint's form: no Code */
    const char *ecs = "{\"RoleArn\": \"arn:aws:iam::1:role/r\", \"AccessKeyId\": "
                      "\"ASIAECSCABCDEF123456\", \"SecretAccessKey\": \"s3cr3t\", \"Token\": "
                      "\"tok\", \"Expiration\": \"2023-11-14T22:20:00Z\"}";
    assert_int_equal(gfs_creds_parse_json(ecs, strlen(ecs), NOW_MS, &p, why, sizeof(why)), 0);
    gfs_creds_parsed_clear(&p);

    static const struct {
        const char *json, *why;
    } bad[] = {
        {"", "empty"},
        {"[]", "not a JSON object"},
        {"{\"AccessKeyId\": \"ASIAIMDSABCDEF123456\"", "not a JSON object"},
        {"{\"Code\": \"Failure\", \"AccessKeyId\": \"x\"}", "Code \"Failure\""},
        {"{\"Code\": 1}", "Code \"\""},
        {"{\"SecretAccessKey\": \"s\", \"Token\": \"t\", \"Expiration\": "
         "\"2023-11-14T23:00:00Z\"}", "no \"AccessKeyId\""},
        {"{\"AccessKeyId\": 5, \"SecretAccessKey\": \"s\"}", "\"AccessKeyId\" is not a string"},
        {"{\"AccessKeyId\": \"ASIA\\u0000IMDSABCDEF123\", \"SecretAccessKey\": \"s\", "
         "\"Token\": \"t\", \"Expiration\": \"2023-11-14T23:00:00Z\"}", "not a JSON object"},
        {"{\"AccessKeyId\": \"ASIAIMDSABCDEF123456\", \"AccessKeyId\": \"ASIAIMDSABCDEF123457\","
         "\"SecretAccessKey\": \"s\", \"Token\": \"t\", \"Expiration\": "
         "\"2023-11-14T23:00:00Z\"}", "not a JSON object"},
        {"{\"AccessKeyId\": \"ASIAIMDSABCDEF123456\", \"SecretAccessKey\": \"s\", \"Token\": "
         "\"t\", \"Expiration\": \"tomorrow\"}", "not an ISO-8601"},
        {"{\"AccessKeyId\": \"ASIAIMDSABCDEF123456\", \"SecretAccessKey\": \"s\", \"Token\": "
         "\"t\", \"Expiration\": \"2023-11-14T22:00:00Z\"}", "expired"},
        {"{\"AccessKeyId\": \"ASIA/IMDS\", \"SecretAccessKey\": \"s\", \"Token\": \"t\", "
         "\"Expiration\": \"2023-11-14T23:00:00Z\"}", "access key id is malformed"},
        {"{\"AccessKeyId\": \"ASIAIMDSABCDEF123456\", \"SecretAccessKey\": \"has space\", "
         "\"Token\": \"t\", \"Expiration\": \"2023-11-14T23:00:00Z\"}",
         "secret access key is malformed"},
        {"{\"AccessKeyId\": \"ASIAIMDSABCDEF123456\", \"SecretAccessKey\": \"s\", \"Token\": "
         "\"t\\nX-Injected: 1\", \"Expiration\": \"2023-11-14T23:00:00Z\"}",
         "session token is malformed"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        int rc = gfs_creds_parse_json(bad[i].json, strlen(bad[i].json), NOW_MS, &p, why,
                                      sizeof(why));
        if (rc != -EBADMSG || !strstr(why, bad[i].why))
            fail_msg("case %zu: rc %d why \"%s\", want \"%s\"", i, rc, why, bad[i].why);
        assert_null(p.akid);
        assert_null(p.secret);
    }
    /* oversized */
    size_t big = GFS_CREDS_ANSWER_MAX + 1;
    char *b = malloc(big);
    memset(b, ' ', big);
    assert_int_equal(gfs_creds_parse_json(b, big, NOW_MS, &p, why, sizeof(why)), -EBADMSG);
    free(b);
}

static void test_role_names(void **state)
{
    (void)state;
    char role[GFS_CREDS_ROLE_MAX + 1];
    assert_int_equal(gfs_creds_role_name("my-role_1+=,.@\nsecond", 21, role, sizeof(role)), 0);
    assert_string_equal(role, "my-role_1+=,.@");
    static const char *const bad[] = {"", "\nx", "../etc", "a b", "role?x", "r%2F"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gfs_creds_role_name(bad[i], strlen(bad[i]), role, sizeof(role)),
                         -EBADMSG);
    char longname[200];
    memset(longname, 'a', sizeof(longname));
    assert_int_equal(gfs_creds_role_name(longname, sizeof(longname), role, sizeof(role)),
                     -EBADMSG);
}

/* ---- INI ---- */

static const char *const INI =
    "# comment\n"
    "; another\n"
    "[default]\n"
    "aws_access_key_id = AKIDDEFAULT\n"
    "aws_secret_access_key = secret/default+1\n"
    "s3 =\n"
    "    addressing_style = path\n"
    "\n"
    "[ prod ]\r\n"
    "AWS_Access_Key_Id:AKIDPROD\r\n"
    "aws_secret_access_key=  spaced secret  \r\n"
    "aws_session_token =\r\n"
    "[profile prod]\n"
    "aws_access_key_id = AKIDCONFIGPROD\n"
    "aws_secret_access_key = s\n"
    "[profile   sso]\n"
    "sso_start_url = https://x\n"
    "sso_role_name = r\n"
    "credential_process = /bin/false\n";

static void test_ini(void **state)
{
    (void)state;
    struct gfs_ini_profile p;
    char why[200];
    assert_int_equal(gfs_creds_parse_ini(INI, strlen(INI), "default", 0, &p, why, sizeof(why)),
                     0);
    assert_true(p.found);
    assert_string_equal(p.keys.akid, "AKIDDEFAULT");
    assert_string_equal(p.keys.secret, "secret/default+1");
    assert_null(p.keys.token);
    gfs_creds_parsed_clear(&p.keys);

    /* credentials file: [prod]; an empty token is no token */
    assert_int_equal(gfs_creds_parse_ini(INI, strlen(INI), "prod", 0, &p, why, sizeof(why)), 0);
    assert_true(p.found);
    assert_string_equal(p.keys.akid, "AKIDPROD");
    assert_string_equal(p.keys.secret, "spaced secret");
    assert_null(p.keys.token);
    gfs_creds_parsed_clear(&p.keys);

    /* config file: [profile prod], and [default] for "default" */
    assert_int_equal(gfs_creds_parse_ini(INI, strlen(INI), "prod", 1, &p, why, sizeof(why)), 0);
    assert_string_equal(p.keys.akid, "AKIDCONFIGPROD");
    gfs_creds_parsed_clear(&p.keys);
    assert_int_equal(gfs_creds_parse_ini(INI, strlen(INI), "default", 1, &p, why, sizeof(why)),
                     0);
    assert_string_equal(p.keys.akid, "AKIDDEFAULT");
    gfs_creds_parsed_clear(&p.keys);

    /* what we do not act on is named */
    assert_int_equal(gfs_creds_parse_ini(INI, strlen(INI), "sso", 1, &p, why, sizeof(why)), 0);
    assert_true(p.found);
    assert_null(p.keys.akid);
    assert_string_equal(p.unsupported, "sso_start_url, sso_role_name, credential_process");

    assert_int_equal(gfs_creds_parse_ini(INI, strlen(INI), "nosuch", 0, &p, why, sizeof(why)),
                     0);
    assert_false(p.found);
    assert_int_equal(gfs_creds_parse_ini("", 0, "default", 0, &p, why, sizeof(why)), 0);
    assert_false(p.found);

    static const struct {
        const char *ini, *why;
    } bad[] = {
        {"aws_access_key_id = x\n[default]\n", "line 1 is outside any [section]"},
        {"[default]\njust words\n", "line 2 is not"},
        {"[default\nx = y\n", "line 1: a section header"},
        {"[]\n", "line 1: a section header"},
        {"[a]]\n", "line 1: a section header"},
        {"[default]\na = b\n[default]\n", "line 3: the profile's section appears twice"},
        {"[default]\naws_access_key_id = A\naws_access_key_id = B\n", "given twice"},
        {"[default]\naws_secret_access_key = abc\n  def\n", "continues a credential value"},
        {"[default]\na = b\x01\n", "control character"},
        {"[default]\n= b\n", "line 2 is not"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        int rc = gfs_creds_parse_ini(bad[i].ini, strlen(bad[i].ini), "default", 0, &p, why,
                                     sizeof(why));
        if (rc != -EBADMSG || !strstr(why, bad[i].why))
            fail_msg("case %zu: rc %d why \"%s\", want \"%s\"", i, rc, why, bad[i].why);
        assert_null(p.keys.akid);
    }
    /* a NUL byte, an overlong line, an oversized file */
    assert_int_equal(gfs_creds_parse_ini("[default]\0x", 11, "default", 0, &p, why, sizeof(why)),
                     -EBADMSG);
    size_t n = 20000;
    char *big = malloc(n + 20);
    memcpy(big, "[default]\na = ", 14);
    memset(big + 14, 'x', n);
    assert_int_equal(gfs_creds_parse_ini(big, n + 14, "default", 0, &p, why, sizeof(why)),
                     -EBADMSG);
    assert_non_null(strstr(why, "longer than"));
    free(big);
    assert_int_equal(gfs_creds_parse_ini("x", GFS_CREDS_FILE_MAX + 1, "default", 0, &p, why,
                                         sizeof(why)), -EBADMSG);
}

/* ---- the checks on keys ---- */

static void test_check(void **state)
{
    (void)state;
    char why[160];
    struct gfs_creds_parsed p = {.akid = (char *)"minio-user", .secret = (char *)"pass word"};
    assert_int_equal(gfs_creds_check(&p, 0, NOW_MS, why, sizeof(why)), 0);
    assert_int_equal(gfs_creds_check(&p, 1, NOW_MS, why, sizeof(why)), -EINVAL); /* strict */
    p.akid = (char *)"user/name";
    assert_int_equal(gfs_creds_check(&p, 0, NOW_MS, why, sizeof(why)), -EINVAL);
    p.akid = (char *)"AKIDOK";
    p.secret = (char *)"line\nbreak";
    assert_int_equal(gfs_creds_check(&p, 0, NOW_MS, why, sizeof(why)), -EINVAL);
    assert_null(strstr(why, "line")); /* never the value */
    p.secret = (char *)"ok";
    p.expires_ms = NOW_MS - 1;
    assert_int_equal(gfs_creds_check(&p, 0, NOW_MS, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "expired"));
}

/* ---- STS ---- */

#define STS_OK                                                                                \
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"  \
    "<AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>sub"                        \
    "</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>arn</Arn></AssumedRoleUser>"          \
    "<Credentials><SessionToken>FwoGZXIvYXdzE+/=</SessionToken><SecretAccessKey>"              \
    "wJalrXUtnFEMI/K7MDENG</SecretAccessKey><Expiration>2023-11-14T23:13:20Z</Expiration>"     \
    "<AccessKeyId>ASIASTSWABCDEF123456</AccessKeyId></Credentials>"                             \
    "</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r-1</RequestId>"           \
    "</ResponseMetadata></AssumeRoleWithWebIdentityResponse>"

static void test_sts(void **state)
{
    (void)state;
    struct gfs_creds_parsed p;
    struct gfs_s3_error e;
    assert_int_equal(gfs_sts_xml_parse_credentials(STS_OK, strlen(STS_OK), &p, &e, NULL), 0);
    assert_string_equal(p.akid, "ASIASTSWABCDEF123456");
    assert_string_equal(p.secret, "wJalrXUtnFEMI/K7MDENG");
    assert_string_equal(p.token, "FwoGZXIvYXdzE+/=");
    assert_int_equal(p.expires_ms, NOW_MS + 3600000);
    char why[160];
    assert_int_equal(gfs_creds_check(&p, 1, NOW_MS, why, sizeof(why)), 0);
    gfs_creds_parsed_clear(&p);

    const char *err = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                      "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>"
                      "Couldn't retrieve verification key</Message></Error><RequestId>r-2"
                      "</RequestId></ErrorResponse>";
    assert_int_equal(gfs_sts_xml_parse_credentials(err, strlen(err), &p, &e, NULL), 1);
    assert_string_equal(e.code, "InvalidIdentityToken");
    assert_string_equal(e.message, "Couldn't retrieve verification key");
    assert_string_equal(e.request_id, "r-2");
    assert_null(p.akid);

    static const char *const bad[] = {
        "",
        "not xml",
        "<Other/>",
        "<AssumeRoleWithWebIdentityResponse/>",
        /* two Credentials */
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "</Credentials><Credentials/></AssumeRoleWithWebIdentityResult>"
        "</AssumeRoleWithWebIdentityResponse>",
        /* a field twice */
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId><AccessKeyId>B</AccessKeyId><SecretAccessKey>s"
        "</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2023-11-14T23:13:20Z"
        "</Expiration></Credentials></AssumeRoleWithWebIdentityResult>"
        "</AssumeRoleWithWebIdentityResponse>",
        /* no token */
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey><Expiration>"
        "2023-11-14T23:13:20Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>"
        "</AssumeRoleWithWebIdentityResponse>",
        /* a bad time */
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t"
        "</SessionToken><Expiration>soon</Expiration></Credentials>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        /* an element inside a field */
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A<b/></AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t"
        "</SessionToken><Expiration>2023-11-14T23:13:20Z</Expiration></Credentials>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        /* a control character */
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t&#10;x"
        "</SessionToken><Expiration>2023-11-14T23:13:20Z</Expiration></Credentials>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        /* XXE */
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>&e;</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>"
        "</AssumeRoleWithWebIdentityResponse>",
        /* an error without a code */
        "<ErrorResponse><Error><Message>m</Message></Error></ErrorResponse>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = gfs_sts_xml_parse_credentials(bad[i], strlen(bad[i]), &p, &e, NULL);
        if (rc != -EBADMSG)
            fail_msg("case %zu: rc %d", i, rc);
        assert_null(p.akid);
        assert_null(p.secret);
    }
}

/* ---- S3 errors that name a region ---- */

static void test_error_region(void **state)
{
    (void)state;
    struct gfs_s3_error e;
    const char *m = "<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region "
                    "'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1"
                    "</Region><RequestId>R</RequestId></Error>";
    assert_int_equal(gfs_s3_xml_parse_error(m, strlen(m), &e, NULL), 0);
    assert_string_equal(e.region, "eu-west-1");
    const char *r = "<Error><Code>PermanentRedirect</Code><Message>m</Message><Endpoint>"
                    "b.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>b</Bucket></Error>";
    assert_int_equal(gfs_s3_xml_parse_error(r, strlen(r), &e, NULL), 0);
    assert_string_equal(e.endpoint, "b.s3.eu-west-1.amazonaws.com");
    assert_string_equal(e.region, "");
    /* not a region: dropped, the error still parses */
    const char *x = "<Error><Code>AuthorizationHeaderMalformed</Code><Region>EU West/../1"
                    "</Region><Endpoint>evil.com/path?x</Endpoint></Error>";
    assert_int_equal(gfs_s3_xml_parse_error(x, strlen(x), &e, NULL), 0);
    assert_string_equal(e.region, "");
    assert_string_equal(e.endpoint, "");
    /* a region is a-z 0-9 '-' only (what an endpoint may also hold is not) */
    const char *u = "<Error><Code>AuthorizationHeaderMalformed</Code><Region>EU-WEST-1"
                    "</Region></Error>";
    assert_int_equal(gfs_s3_xml_parse_error(u, strlen(u), &e, NULL), 0);
    assert_string_equal(e.region, "");
    const char *d = "<Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-west-1.evil"
                    "</Region></Error>";
    assert_int_equal(gfs_s3_xml_parse_error(d, strlen(d), &e, NULL), 0);
    assert_string_equal(e.region, "");
}

/* ---- addressing ---- */

static void test_addressing(void **state)
{
    (void)state;
    static const struct {
        const char *mode, *bucket, *host;
        int https, want; /* 1 virtual, 0 path, -1 refused */
    } cases[] = {
        /* auto on AWS: virtual unless the name cannot be a host there */
        {"auto", "my-bucket", NULL, 1, 1},
        {NULL, "my-bucket", NULL, 1, 1},
        {"auto", "my.bucket", NULL, 1, 0},
        {"auto", "My_Bucket", NULL, 1, 0},
        {"auto", "my-bucket", "s3.eu-west-1.amazonaws.com", 1, 1},
        {"auto", "my-bucket", "s3.cn-north-1.amazonaws.com.cn", 1, 1},
        {"auto", "my-bucket", "bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com:443", 1, 1},
        {"auto", "my.bucket", "s3.amazonaws.com", 0, 1},
        /* auto elsewhere: path */
        {"auto", "my-bucket", "127.0.0.1:9000", 0, 0},
        {"auto", "my-bucket", "minio.local:9000", 1, 0},
        {"auto", "my-bucket", "[::1]:9000", 0, 0},
        {"auto", "my-bucket", "amazonaws.com.evil.example", 1, 0},
        {"path", "my-bucket", NULL, 1, 0},
        {"path", "My_Bucket", "127.0.0.1", 0, 0},
        /* virtual as asked, or refused with a reason */
        {"virtual", "my-bucket", "s3.localhost:7480", 0, 1},
        {"virtual", "my.bucket", "s3.localhost:7480", 0, 1},
        {"virtual", "my.bucket", "s3.localhost:7480", 1, -1},
        {"virtual", "my-bucket", "127.0.0.1:7480", 0, -1},
        {"virtual", "my-bucket", "localhost:7480", 0, -1},
        {"virtual", "My_Bucket", "s3.localhost", 0, -1},
        {"virtual", "my-bucket", NULL, 1, 1},
        {"virtual", "192.168.1.2", "s3.localhost", 0, -1},
        {"sideways", "my-bucket", NULL, 1, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        int rc = gfs_s3_use_virtual(cases[i].mode, cases[i].bucket, cases[i].host,
                                    cases[i].https, err, sizeof(err));
        int want = cases[i].want < 0 ? -EINVAL : cases[i].want;
        if (rc != want)
            fail_msg("case %zu (%s %s %s): %d, want %d", i, cases[i].mode, cases[i].bucket,
                     cases[i].host ? cases[i].host : "AWS", rc, want);
        if (rc < 0)
            assert_non_null(strstr(err, "storage.addressing"));
    }
}

/* ---- x-amz-checksum-crc32c ---- */

static void test_crc32c_header(void **state)
{
    (void)state;
    char b64[16];
    /* CRC-32C("123456789") = 0xE3069283, big-endian, base64 */
    assert_int_equal(gfs_s3_crc32c_b64("123456789", 9, b64), 0);
    assert_string_equal(b64, "4waSgw==");
    assert_int_equal(gfs_s3_crc32c_b64("", 0, b64), 0);
    assert_string_equal(b64, "AAAAAA==");
    assert_int_equal(gfs_s3_crc32c_b64("hello", 5, b64), 0);
    assert_string_equal(b64, "mnG7TA==");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),       cmocka_unit_test(test_json),
        cmocka_unit_test(test_role_names),  cmocka_unit_test(test_ini),
        cmocka_unit_test(test_check),       cmocka_unit_test(test_sts),
        cmocka_unit_test(test_error_region), cmocka_unit_test(test_addressing),
        cmocka_unit_test(test_crc32c_header),
    };
    return cmocka_run_group_tests_name("s3_creds_parse", tests, NULL, NULL);
}
