/*
 * test_sigv4.c — known-answer tests of lib/sigv4.c.
 *
 * Sources of the expected values (public, not this repository):
 *  - AWS's Signature Version 4 test suite (aws-sig-v4-test-suite): key
 *    AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830T123600Z,
 *    us-east-1, service "service". For each case the canonical request, the
 *    string to sign and the Authorization header are compared separately, so a
 *    failure says which step is wrong.
 *  - The Amazon S3 API Reference "Signature Calculations" examples
 *    (examplebucket, AKIAIOSFODNN7EXAMPLE, 20130524T000000Z): GET with Range,
 *    PUT with a body and '$' in the key, GET ?lifecycle, GET ?max-keys=2&prefix=J.
 *  - RFC 4231 (HMAC-SHA-256) and RFC 1321 (MD5) for the primitives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "sigv4.h"

#define SUITE_DATE "20150830T123600Z"
#define SUITE_SCOPE "20150830/us-east-1/service/aws4_request"
#define SUITE_CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SUITE_SCOPE ", "

static const struct gfs_sigv4_signer suite_signer = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "service",
};

static const struct gfs_sigv4_signer s3_signer = {
    .access_key_id = "AKIAIOSFODNN7EXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "s3",
};

/* Check all three steps of one request against the expected texts. */
static void check_steps(const struct gfs_sigv4_signer *s, const struct gfs_sigv4_request *r,
                        const char *date, const char *scope, const char *want_creq,
                        const char *want_sts, const char *want_authz)
{
    char *creq = NULL, *sh = NULL, *sts = NULL, *authz = NULL;
    assert_int_equal(gfs_sigv4_canonical_request(r, &creq, &sh), 0);
    if (want_creq)
        assert_string_equal(creq, want_creq);
    assert_int_equal(gfs_sigv4_string_to_sign(date, scope, creq, &sts), 0);
    if (want_sts)
        assert_string_equal(sts, want_sts);
    assert_int_equal(gfs_sigv4_authorization(s, r, date, &authz), 0);
    assert_string_equal(authz, want_authz);
    free(creq);
    free(sh);
    free(sts);
    free(authz);
}

static const struct gfs_sigv4_kv suite_headers[] = {
    {"Host", "example.amazonaws.com"},
    {"X-Amz-Date", SUITE_DATE},
};

static void test_get_vanilla(void **state)
{
    (void)state;
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .headers = suite_headers, .nheaders = 2,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                "host;x-amz-date\n" GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void test_get_vanilla_query_order_key_case(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv q[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 2, .headers = suite_headers,
        .nheaders = 2, .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
                "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_get_vanilla_query_unreserved(void **state)
{
    (void)state;
    const char *u = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const struct gfs_sigv4_kv q[] = {{u, u}};
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 1, .headers = suite_headers,
        .nheaders = 2, .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE, NULL,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197");
}

static void test_get_vanilla_utf8_query(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv q[] = {{"\xe1\x88\xb4", "bar"}};
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 1, .headers = suite_headers,
        .nheaders = 2, .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\n"
                "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
}

static void test_get_utf8(void **state)
{
    (void)state;
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/\xe1\x88\xb4", .headers = suite_headers, .nheaders = 2,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                "host;x-amz-date\n" GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
}

static void test_get_space(void **state)
{
    (void)state;
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/example space/", .headers = suite_headers, .nheaders = 2,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "GET\n/example%20space/\n\nhost:example.amazonaws.com\n"
                "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741");
}

static void test_post_x_www_form_urlencoded(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv h[] = {
        {"Content-Type", "application/x-www-form-urlencoded"},
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", SUITE_DATE},
    };
    char hash[65];
    assert_int_equal(gfs_sha256_hex("Param1=value1", 13, hash), 0);
    assert_string_equal(hash, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
    struct gfs_sigv4_request r = {
        .method = "POST", .path = "/", .headers = h, .nheaders = 3, .payload_hash = hash,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
                "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                "content-type;host;x-amz-date\n"
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
                SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, "
                "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

static void test_post_vanilla_query(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv q[] = {{"Param1", "value1"}};
    struct gfs_sigv4_request r = {
        .method = "POST", .path = "/", .query = q, .nquery = 1, .headers = suite_headers,
        .nheaders = 2, .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE, NULL,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
                SUITE_CRED "SignedHeaders=host;x-amz-date, "
                "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11");
}

/* get-header-value-trim: values trimmed, inner runs of spaces collapsed. */
static void test_get_header_value_trim(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv h[] = {
        {"Host", "example.amazonaws.com"},
        {"My-Header1", " value1"},
        {"My-Header2", " \"a   b   c\""},
        {"X-Amz-Date", SUITE_DATE},
    };
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .headers = h, .nheaders = 4,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE,
                "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
                "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n"
                GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
                SUITE_CRED "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
                "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

/* post-sts-header-before: the session token is a signed header. */
static void test_post_sts_header_before(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", SUITE_DATE},
        {"X-Amz-Security-Token",
         "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxf"
         "pSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KP"
         "kyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbq"
         "BAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="},
    };
    struct gfs_sigv4_request r = {
        .method = "POST", .path = "/", .headers = h, .nheaders = 3,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&suite_signer, &r, SUITE_DATE, SUITE_SCOPE, NULL,
                "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n"
                "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
                SUITE_CRED "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
}

/* ---- the S3 API Reference examples ---- */

#define S3_DATE "20130524T000000Z"
#define S3_CRED "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "

static void test_s3_get_object_range(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv h[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", GFS_SHA256_EMPTY_HEX},
        {"x-amz-date", S3_DATE},
    };
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/test.txt", .headers = h, .nheaders = 4,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&s3_signer, &r, S3_DATE, "20130524/us-east-1/s3/aws4_request",
                "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                "x-amz-content-sha256:" GFS_SHA256_EMPTY_HEX "\nx-amz-date:20130524T000000Z\n\n"
                "host;range;x-amz-content-sha256;x-amz-date\n" GFS_SHA256_EMPTY_HEX,
                "AWS4-HMAC-SHA256\n" S3_DATE "\n20130524/us-east-1/s3/aws4_request\n"
                "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
                S3_CRED "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_s3_put_object(void **state)
{
    (void)state;
    char hash[65];
    assert_int_equal(gfs_sha256_hex("Welcome to Amazon S3.", 21, hash), 0);
    assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    const struct gfs_sigv4_kv h[] = {
        {"Host", "examplebucket.s3.amazonaws.com"},
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
        {"x-amz-date", S3_DATE},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", hash},
    };
    struct gfs_sigv4_request r = {
        .method = "PUT", .path = "/test$file.text", .headers = h, .nheaders = 5,
        .payload_hash = hash,
    };
    char *creq = NULL;
    assert_int_equal(gfs_sigv4_canonical_request(&r, &creq, NULL), 0);
    assert_non_null(strstr(creq, "\n/test%24file.text\n"));
    free(creq);
    check_steps(&s3_signer, &r, S3_DATE, "20130524/us-east-1/s3/aws4_request", NULL, NULL,
                S3_CRED "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-storage-class, "
                "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static const struct gfs_sigv4_kv s3_bucket_headers[] = {
    {"Host", "examplebucket.s3.amazonaws.com"},
    {"x-amz-date", S3_DATE},
    {"x-amz-content-sha256", GFS_SHA256_EMPTY_HEX},
};

static void test_s3_get_lifecycle(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv q[] = {{"lifecycle", NULL}};
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 1, .headers = s3_bucket_headers,
        .nheaders = 3, .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    char *creq = NULL;
    assert_int_equal(gfs_sigv4_canonical_request(&r, &creq, NULL), 0);
    assert_non_null(strstr(creq, "\n/\nlifecycle=\n"));
    free(creq);
    check_steps(&s3_signer, &r, S3_DATE, "20130524/us-east-1/s3/aws4_request", NULL, NULL,
                S3_CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_s3_list_objects(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 2, .headers = s3_bucket_headers,
        .nheaders = 3, .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    check_steps(&s3_signer, &r, S3_DATE, "20130524/us-east-1/s3/aws4_request", NULL, NULL,
                S3_CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

/* ---- building blocks ---- */

static void test_uri_encode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int keep_slash;
        const char *out;
    } t[] = {
        {"a-b_c.d~e", 1, "a-b_c.d~e"},
        {"a b+c=d%e/f", 1, "a%20b%2Bc%3Dd%25e/f"},
        {"a b+c=d%e/f", 0, "a%20b%2Bc%3Dd%25e%2Ff"},
        {"!'()*$&,;:@?#[]", 0, "%21%27%28%29%2A%24%26%2C%3B%3A%40%3F%23%5B%5D"},
        {"\xc3\xa9\xe2\x82\xac", 0, "%C3%A9%E2%82%AC"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *o = gfs_sigv4_uri_encode(t[i].in, strlen(t[i].in), t[i].keep_slash);
        assert_non_null(o);
        assert_string_equal(o, t[i].out);
        free(o);
    }
}

static void test_canonical_query(void **state)
{
    (void)state;
    char *q = NULL;
    /* '/' inside a value is %2F; a bare name gets "="; sorted by encoded name */
    const struct gfs_sigv4_kv a[] = {
        {"prefix", "nbd/vm 1/"}, {"list-type", "2"}, {"uploads", NULL},
        {"continuation-token", "1/ab+c=="}, {"start-after", ""},
    };
    assert_int_equal(gfs_sigv4_canonical_query(a, 5, &q), 0);
    assert_string_equal(q, "continuation-token=1%2Fab%2Bc%3D%3D&list-type=2&"
                           "prefix=nbd%2Fvm%201%2F&start-after=&uploads=");
    free(q);
    /* same name twice: ordered by value */
    const struct gfs_sigv4_kv b[] = {{"a", "2"}, {"a", "1"}, {"A", "3"}};
    assert_int_equal(gfs_sigv4_canonical_query(b, 3, &q), 0);
    assert_string_equal(q, "A=3&a=1&a=2");
    free(q);
    assert_int_equal(gfs_sigv4_canonical_query(NULL, 0, &q), 0);
    assert_string_equal(q, "");
    free(q);
}

/* Hostile or malformed inputs are refused, never signed. */
static void test_refuses_bad_input(void **state)
{
    (void)state;
    char *out = NULL;
    const struct gfs_sigv4_kv inject[] = {
        {"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE},
        {"X-Evil", "a\r\nAuthorization: x"},
    };
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .headers = inject, .nheaders = 3,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    assert_int_equal(gfs_sigv4_authorization(&suite_signer, &r, SUITE_DATE, &out), -EINVAL);
    assert_null(out);

    const struct gfs_sigv4_kv badname[] = {
        {"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DATE}, {"Bad Name", "v"},
    };
    r.headers = badname;
    assert_int_equal(gfs_sigv4_authorization(&suite_signer, &r, SUITE_DATE, &out), -EINVAL);

    r.headers = suite_headers;
    r.nheaders = 2;
    static const char *bad_dates[] = {"", "20150830", "20150830T123600", "2015083xT123600Z",
                                      "20150830T123600ZZ", "20150830 123600Z"};
    for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++)
        assert_int_equal(gfs_sigv4_authorization(&suite_signer, &r, bad_dates[i], &out),
                         -EINVAL);

    struct gfs_sigv4_signer s = suite_signer;
    s.region = "us-east-1/evil";
    assert_int_equal(gfs_sigv4_authorization(&s, &r, SUITE_DATE, &out), -EINVAL);
    s = suite_signer;
    s.access_key_id = "";
    assert_int_equal(gfs_sigv4_authorization(&s, &r, SUITE_DATE, &out), -EINVAL);

    r.nheaders = 0;
    assert_int_equal(gfs_sigv4_authorization(&suite_signer, &r, SUITE_DATE, &out), -EINVAL);
}

static void test_primitives(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(gfs_sha256_hex("", 0, hex), 0);
    assert_string_equal(hex, GFS_SHA256_EMPTY_HEX);

    uint8_t mac[32];
    /* RFC 4231 test case 2 */
    assert_int_equal(gfs_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), 0);
    gfs_hex_encode(mac, 32, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* RFC 1321: MD5("abc"), and the base64 Content-MD5 of an empty body */
    uint8_t md5[16];
    char md5hex[33], b64[32];
    assert_int_equal(gfs_md5("abc", 3, md5), 0);
    gfs_hex_encode(md5, 16, md5hex);
    assert_string_equal(md5hex, "900150983cd24fb0d6963f7d28e17f72");
    assert_int_equal(gfs_md5("", 0, md5), 0);
    assert_int_equal(gfs_base64(md5, 16, b64, sizeof(b64)), 0);
    assert_string_equal(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
    assert_int_equal(gfs_base64(md5, 16, b64, 10), -ERANGE);

    char d[17];
    assert_int_equal(gfs_sigv4_amz_date(1369353600, d), 0);
    assert_string_equal(d, "20130524T000000Z");
    assert_int_equal(gfs_sigv4_amz_date(0, d), 0);
    assert_string_equal(d, "19700101T000000Z");

    /* signing key of the IAM example in the SigV4 documentation */
    uint8_t key[32];
    assert_int_equal(gfs_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830",
                                           "us-east-1", "iam", key), 0);
    gfs_hex_encode(key, 32, hex);
    assert_string_equal(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

/* Duplicate header names are joined with ',' in the order given. */
static void test_duplicate_headers(void **state)
{
    (void)state;
    const struct gfs_sigv4_kv h[] = {
        {"Host", "example.amazonaws.com"}, {"My-Header1", "value2"},
        {"X-Amz-Date", SUITE_DATE}, {"my-header1", "value2"}, {"MY-HEADER1", "value1"},
    };
    struct gfs_sigv4_request r = {
        .method = "GET", .path = "/", .headers = h, .nheaders = 5,
        .payload_hash = GFS_SHA256_EMPTY_HEX,
    };
    char *creq = NULL, *sh = NULL;
    assert_int_equal(gfs_sigv4_canonical_request(&r, &creq, &sh), 0);
    assert_non_null(strstr(creq, "\nmy-header1:value2,value2,value1\n"));
    assert_string_equal(sh, "host;my-header1;x-amz-date");
    free(creq);
    free(sh);
    /* aws-sig-v4-test-suite get-header-key-duplicate */
    char *authz = NULL;
    assert_int_equal(gfs_sigv4_authorization(&suite_signer, &r, SUITE_DATE, &authz), 0);
    assert_string_equal(authz, SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, "
                        "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
    free(authz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla),
        cmocka_unit_test(test_get_vanilla_query_order_key_case),
        cmocka_unit_test(test_get_vanilla_query_unreserved),
        cmocka_unit_test(test_get_vanilla_utf8_query),
        cmocka_unit_test(test_get_utf8),
        cmocka_unit_test(test_get_space),
        cmocka_unit_test(test_post_x_www_form_urlencoded),
        cmocka_unit_test(test_post_vanilla_query),
        cmocka_unit_test(test_get_header_value_trim),
        cmocka_unit_test(test_post_sts_header_before),
        cmocka_unit_test(test_s3_get_object_range),
        cmocka_unit_test(test_s3_put_object),
        cmocka_unit_test(test_s3_get_lifecycle),
        cmocka_unit_test(test_s3_list_objects),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_canonical_query),
        cmocka_unit_test(test_refuses_bad_input),
        cmocka_unit_test(test_primitives),
        cmocka_unit_test(test_duplicate_headers),
    };
    return cmocka_run_group_tests_name("sigv4", tests, NULL, NULL);
}
