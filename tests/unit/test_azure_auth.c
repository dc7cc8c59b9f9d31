/*
 * test_azure_auth.c — known-answer tests of lib/azure_auth.c (Shared Key).
 *
 * Sources of the expected values:
 *  - azure_auth_vectors.h, generated at build time by
 *    tests/azure/make_auth_vectors.py with tests/azure/azsign.py: an
 *    independent Python implementation of Microsoft's "Authorize with Shared
 *    Key" (hmac, base64 and the canonicalization rules written from the
 *    documentation, sharing no code with the C signer). For each request the
 *    string to sign and the Authorization header are compared separately, so
 *    a failure says which step is wrong.
 *  - The canonicalized-resource examples of that documentation (myaccount,
 *    mycontainer: comp=metadata, and List Blobs with three include values).
 *  - RFC 7231's example date for the x-ms-date format.
 * Azurite itself checks every signature end to end (tests/azure/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "azure_auth.h"

struct az_vector {
    const char *name, *account, *key, *method, *path;
    size_t nquery;
    struct gfs_az_kv query[8];
    size_t nheaders;
    struct gfs_az_kv headers[12];
    const char *string_to_sign;
    const char *authorization;
};

#include "azure_auth_vectors.h"

static void test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof az_vectors / sizeof az_vectors[0]; i++) {
        const struct az_vector *v = &az_vectors[i];
        struct gfs_az_request r = {v->method, v->path, v->query, v->nquery, v->headers,
                                   v->nheaders};
        char *sts = NULL, *auth = NULL;
        assert_int_equal(gfs_az_string_to_sign(v->account, &r, &sts), 0);
        if (strcmp(sts, v->string_to_sign) != 0)
            fail_msg("%s: string to sign\n got: [%s]\nwant: [%s]", v->name, sts,
                     v->string_to_sign);
        uint8_t key[GFS_AZ_KEY_MAX];
        size_t kl = 0;
        assert_int_equal(gfs_az_key_decode(v->key, key, &kl), 0);
        assert_int_equal(gfs_az_authorization(v->account, key, kl, &r, &auth), 0);
        if (strcmp(auth, v->authorization) != 0)
            fail_msg("%s: authorization\n got: %s\nwant: %s", v->name, auth, v->authorization);
        free(sts);
        free(auth);
    }
}

static void test_documented_resources(void **state)
{
    (void)state;
    char *out = NULL;
    /* GET https://myaccount.blob.core.windows.net/mycontainer?restype=container&comp=metadata */
    struct gfs_az_kv q1[] = {{"restype", "container"}, {"comp", "metadata"}};
    assert_int_equal(gfs_az_canonical_resource("myaccount", "/mycontainer", q1, 2, &out), 0);
    assert_string_equal(out, "/myaccount/mycontainer\ncomp:metadata\nrestype:container");
    free(out);
    /* ...?restype=container&comp=list&include=snapshots&include=metadata&include=uncommittedblobs */
    struct gfs_az_kv q2[] = {{"restype", "container"}, {"comp", "list"},
                             {"include", "snapshots"}, {"include", "metadata"},
                             {"include", "uncommittedblobs"}};
    assert_int_equal(gfs_az_canonical_resource("myaccount", "/mycontainer", q2, 5, &out), 0);
    assert_string_equal(out, "/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots,"
                             "uncommittedblobs\nrestype:container");
    free(out);
    /* the emulator: the account in the path too */
    assert_int_equal(gfs_az_canonical_resource("devstoreaccount1", "/devstoreaccount1/c/b",
                                               NULL, 0, &out), 0);
    assert_string_equal(out, "/devstoreaccount1/devstoreaccount1/c/b");
    free(out);
}

static void test_canonical_headers(void **state)
{
    (void)state;
    char *out = NULL;
    struct gfs_az_kv h[] = {{"x-ms-version", "2021-12-02"}, {"Content-Type", "a/b"},
                            {"X-MS-Date", "Thu, 01 Jan 1970 00:00:00 GMT"},
                            {"x-ms-blob-type", "BlockBlob"}, {"x-msnot", "x"}};
    assert_int_equal(gfs_az_canonical_headers(h, 5, &out), 0);
    assert_string_equal(out, "x-ms-blob-type:BlockBlob\nx-ms-date:Thu, 01 Jan 1970 00:00:00 "
                             "GMT\nx-ms-version:2021-12-02\n");
    free(out);
    assert_int_equal(gfs_az_canonical_headers(NULL, 0, &out), 0);
    assert_string_equal(out, "");
    free(out);
}

/* What the two readings of the whitespace rule would sign differently, and
 * what could smuggle a header, is refused. */
static void test_refused(void **state)
{
    (void)state;
    char *out = NULL;
    static const char *const bad_values[] = {" lead", "trail ", "two  spaces", "tab\there",
                                             "cr\rlf", "lf\nx", "nul\x01"};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        struct gfs_az_kv h[] = {{"x-ms-meta", bad_values[i]}};
        struct gfs_az_request r = {"GET", "/c/b", NULL, 0, h, 1};
        assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
        struct gfs_az_kv s[] = {{"If-Match", bad_values[i]}};
        r.headers = s;
        assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    }
    struct gfs_az_kv dup[] = {{"x-ms-date", "a"}, {"X-MS-DATE", "b"}};
    struct gfs_az_request r = {"GET", "/c/b", NULL, 0, dup, 2};
    assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    struct gfs_az_kv dup2[] = {{"Range", "bytes=0-1"}, {"range", "bytes=2-3"}};
    r.headers = dup2;
    assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    struct gfs_az_kv badname[] = {{"x-ms bad", "v"}};
    r.headers = badname;
    assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    r.nheaders = 0;
    r.path = "c/b"; /* not absolute */
    assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    r.path = "/c/b?x=1"; /* a query in the path */
    assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    r.path = "/c/b";
    assert_int_equal(gfs_az_string_to_sign("Acct", &r, &out), -EINVAL); /* not an account */
    struct gfs_az_kv q[] = {{"prefix", "a\nb"}};
    r.query = q;
    r.nquery = 1;
    assert_int_equal(gfs_az_string_to_sign("acct", &r, &out), -EINVAL);
    uint8_t key[4] = {1, 2, 3, 4};
    r.nquery = 0;
    assert_int_equal(gfs_az_authorization("acct", key, 0, &r, &out), -EINVAL);
    assert_null(out);
}

static void test_key_decode(void **state)
{
    (void)state;
    uint8_t key[GFS_AZ_KEY_MAX];
    size_t kl = 0;
    const char *dev = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                      "K1SZFPTOtr/KBHBeksoGMGw==";
    assert_int_equal(gfs_az_key_decode(dev, key, &kl), 0);
    assert_int_equal(kl, 64);
    assert_int_equal(key[0], 0x11);
    assert_int_equal(key[63], 0x1b);
    assert_int_equal(gfs_az_key_decode("", key, &kl), -EINVAL);
    assert_int_equal(gfs_az_key_decode("abc", key, &kl), -EINVAL);          /* length */
    assert_int_equal(gfs_az_key_decode("ab c", key, &kl), -EINVAL);         /* blank */
    assert_int_equal(gfs_az_key_decode("YWJj\n", key, &kl), -EINVAL);       /* newline */
    assert_int_equal(gfs_az_key_decode("YWI=YWI=", key, &kl), -EINVAL);     /* padding inside */
    assert_int_equal(gfs_az_key_decode("YWJ=", key, &kl), -EINVAL);         /* not canonical */
    assert_int_equal(gfs_az_key_decode("YWJj", key, &kl), 0);
    assert_int_equal(kl, 3);
    char big[400];
    memset(big, 'A', 176);
    big[176] = '\0'; /* 132 bytes: too long */
    assert_int_equal(gfs_az_key_decode(big, key, &kl), -EINVAL);
    assert_int_equal(gfs_az_key_decode(NULL, key, &kl), -EINVAL);
}

static void test_sas(void **state)
{
    (void)state;
    char *out = NULL;
    const char *ok = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&spr=https,"
                     "http&sig=abc%2Bdef%2F%3D";
    assert_int_equal(gfs_az_sas_normalize(ok, &out), 0);
    assert_string_equal(out, ok);
    free(out);
    char q[512];
    snprintf(q, sizeof q, "?%s", ok);
    assert_int_equal(gfs_az_sas_normalize(q, &out), 0);
    assert_string_equal(out, ok); /* without the '?' */
    free(out);
    static const char *const bad[] = {
        "", "?", "sv=1&sp=r",                 /* no sig */
        "sig=abc&sp=r",                       /* no sv */
        "sv=1&sig=",                          /* empty sig */
        "sv=1&&sig=a", "sv=1&sig=a&", "=x&sv=1&sig=a", "sv=1&noeq&sig=a",
        "sv=1&sig=a b", "sv=1&sig=a#b", "sv=1&sig=a\nb", "sv=1&sig=a%zz", "sv=1&sig=a%4",
        "sv=1&sig=a\"b", "sv=1&sig=a<b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (gfs_az_sas_normalize(bad[i], &out) != -EINVAL)
            fail_msg("accepted SAS '%s'", bad[i]);
    }
    char *big = malloc(GFS_AZ_SAS_MAX + 20);
    assert_non_null(big);
    strcpy(big, "sv=1&sig=");
    memset(big + 9, 'a', GFS_AZ_SAS_MAX);
    big[GFS_AZ_SAS_MAX + 9] = '\0';
    assert_int_equal(gfs_az_sas_normalize(big, &out), -EINVAL);
    free(big);
}

static void test_date(void **state)
{
    (void)state;
    char d[30];
    assert_int_equal(gfs_az_date(784111777, d), 0); /* RFC 7231's example */
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(gfs_az_date(0, d), 0);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static void test_account(void **state)
{
    (void)state;
    assert_true(gfs_az_account_ok("devstoreaccount1", 16));
    assert_true(gfs_az_account_ok("abc", 3));
    assert_false(gfs_az_account_ok("ab", 2));
    assert_false(gfs_az_account_ok("abcdefghijklmnopqrstuvwxy", 25));
    assert_false(gfs_az_account_ok("Abc", 3));
    assert_false(gfs_az_account_ok("a-c", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_documented_resources),
        cmocka_unit_test(test_canonical_headers),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_key_decode),
        cmocka_unit_test(test_sas),
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_account),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
