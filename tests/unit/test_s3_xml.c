/*
 * test_s3_xml.c — lib/s3_xml.c: ListObjectsV2 results, error bodies and
 * DeleteObjects documents, the good ones as S3 and s3rver send them, and a
 * table of hostile inputs that must all be refused with -EBADMSG (never a
 * crash, never a partial result, never network access, never a print).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <cmocka.h>

#include <libxml/parser.h>

#include "log.h"
#include "s3_xml.h"

#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static const char list_ok[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult " NS ">\n"
    "  <Name>bucket</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>\n"
    "  <IsTruncated>true</IsTruncated>\n"
    "  <Contents><Key>p/a</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
    "<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents>\n"
    "  <Contents><Key>p/b &amp; c &lt;d&gt; \xc3\xa9</Key><Size>18446744073709551615</Size></Contents>\n"
    "  <Contents><Key><![CDATA[p/cdata]]></Key><Size>42</Size></Contents>\n"
    "  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\n"
    "</ListBucketResult>\n";

static void test_list_ok(void **state)
{
    (void)state;
    struct gfs_s3_list_page p;
    assert_int_equal(gfs_s3_xml_parse_list(list_ok, strlen(list_ok), &p, NULL), 0);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.entries[0].key, "p/a");
    assert_int_equal(p.entries[0].size, 0);
    assert_string_equal(p.entries[1].key, "p/b & c <d> \xc3\xa9");
    assert_true(p.entries[1].size == UINT64_MAX);
    assert_string_equal(p.entries[2].key, "p/cdata");
    assert_int_equal(p.entries[2].size, 42);
    assert_true(p.truncated);
    assert_string_equal(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    gfs_s3_list_page_clear(&p);
    assert_null(p.entries);
}

static void test_list_last_page_and_empty(void **state)
{
    (void)state;
    struct gfs_s3_list_page p;
    const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                       "<Contents><Key>k</Key><Size>7</Size></Contents>"
                       "<NextContinuationToken>ignored</NextContinuationToken>"
                       "</ListBucketResult>";
    assert_int_equal(gfs_s3_xml_parse_list(last, strlen(last), &p, NULL), 0);
    assert_int_equal(p.n, 1);
    assert_false(p.truncated);
    assert_null(p.next_token);
    gfs_s3_list_page_clear(&p);

    const char *empty = "<ListBucketResult " NS "><Name>b</Name><KeyCount>0</KeyCount>"
                        "<IsTruncated>false</IsTruncated></ListBucketResult>";
    assert_int_equal(gfs_s3_xml_parse_list(empty, strlen(empty), &p, NULL), 0);
    assert_int_equal(p.n, 0);
    gfs_s3_list_page_clear(&p);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * times + tl + 1);
    assert_non_null(s);
    memcpy(s, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + ul * times, tail, tl + 1);
    return s;
}

/* Hostile or broken ListBucketResult bodies: every one is -EBADMSG. */
static void test_list_hostile(void **state)
{
    (void)state;
    char huge_key[GFS_S3_KEY_MAX + 200];
    char *k = huge_key;
    k += sprintf(k, "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>");
    memset(k, 'a', GFS_S3_KEY_MAX + 1);
    k += GFS_S3_KEY_MAX + 1;
    sprintf(k, "</Key><Size>1</Size></Contents></ListBucketResult>");

    const char *const table[] = {
        /* not XML / wrong document */
        "",
        "not xml at all",
        "<ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated>",
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResul>",
        "<Error><Code>AccessDenied</Code></Error>",
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult><x/>",
        "\xff\xfe<\x00L\x00",
        /* missing or bad IsTruncated */
        "<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>TRUE</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><IsTruncated>false</IsTruncated>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated><b>true</b></IsTruncated></ListBucketResult>",
        /* truncated without a token, or an empty/duplicated/control token */
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken></NextContinuationToken></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>a"
        "</NextContinuationToken><NextContinuationToken>b</NextContinuationToken>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>a&#10;b</NextContinuationToken></ListBucketResult>",
        /* missing fields in Contents */
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key></Key><Size>1</Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Key>b</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        /* bad sizes: negative, non-numeric, overflow, empty, spaces, hex, float */
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>-1</Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>abc</Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key>"
        "<Size>18446744073709551616</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key>"
        "<Size>99999999999999999999999</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size></Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size> 1</Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>0x10</Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>1.5</Size>"
        "</Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>1</Size>"
        "<Size>2</Size></Contents></ListBucketResult>",
        /* keys with control characters or markup inside */
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&#9;b</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a<i/>b</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        /* KeyCount that disagrees with the entries, or is not a number */
        "<ListBucketResult><KeyCount>2</KeyCount><IsTruncated>false</IsTruncated><Contents>"
        "<Key>a</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><KeyCount>one</KeyCount><IsTruncated>false</IsTruncated>"
        "</ListBucketResult>",
        /* entity tricks: XXE (file and network), billion laughs, parameter entities */
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>&x;</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        "<?xml version=\"1.0\"?><!DOCTYPE r SYSTEM \"http://127.0.0.1:1/evil.dtd\">"
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY % p SYSTEM \"http://127.0.0.1:1/x\">%p;]>"
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
        "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
        "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
        "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">"
        "<!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">"
        "<!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">"
        "<!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">"
        "<!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">"
        "<!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">]>"
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>&lol9;</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        /* an undeclared entity reference */
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>&undefined;</Key>"
        "<Size>1</Size></Contents></ListBucketResult>",
        huge_key,
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct gfs_s3_list_page p;
        size_t len = strlen(table[i]);
        if (i == 7)
            len = 6; /* the UTF-16 fragment holds NULs */
        int rc = gfs_s3_xml_parse_list(table[i], len, &p, NULL);
        if (rc != -EBADMSG)
            fail_msg("hostile list #%zu accepted (rc %d): %.80s", i, rc, table[i]);
        assert_null(p.entries);
        assert_int_equal(p.n, 0);
        assert_null(p.next_token);
    }
}

/* Documents too big or too deep for the parser's limits. */
static void test_list_limits(void **state)
{
    (void)state;
    struct gfs_s3_list_page p;
    /* deep nesting: 100000 levels inside a Contents */
    char *deep = repeat("<ListBucketResult><IsTruncated>false</IsTruncated><Contents>", "<a>",
                        100000, "</Contents></ListBucketResult>");
    assert_int_equal(gfs_s3_xml_parse_list(deep, strlen(deep), &p, NULL), -EBADMSG);
    free(deep);

    /* more entries than any page may hold */
    char *many = repeat("<ListBucketResult><IsTruncated>false</IsTruncated>",
                        "<Contents><Key>k</Key><Size>1</Size></Contents>",
                        GFS_S3_LIST_MAX_KEYS + 1, "</ListBucketResult>");
    assert_int_equal(gfs_s3_xml_parse_list(many, strlen(many), &p, NULL), -EBADMSG);
    free(many);

    /* exactly the maximum is fine */
    many = repeat("<ListBucketResult><IsTruncated>false</IsTruncated>",
                  "<Contents><Key>k</Key><Size>1</Size></Contents>", GFS_S3_LIST_MAX_KEYS,
                  "</ListBucketResult>");
    assert_int_equal(gfs_s3_xml_parse_list(many, strlen(many), &p, NULL), 0);
    assert_int_equal(p.n, GFS_S3_LIST_MAX_KEYS);
    gfs_s3_list_page_clear(&p);
    free(many);

    /* a body over the size bound is refused before parsing */
    size_t big = GFS_S3_XML_MAX + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    memcpy(huge, "<ListBucketResult>", 18);
    assert_int_equal(gfs_s3_xml_parse_list(huge, big, &p, NULL), -EBADMSG);
    free(huge);

    /* a key of exactly GFS_S3_KEY_MAX bytes is fine */
    char key[GFS_S3_KEY_MAX + 1];
    memset(key, 'k', GFS_S3_KEY_MAX);
    key[GFS_S3_KEY_MAX] = '\0';
    char *doc = repeat("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>", key, 1,
                       "</Key><Size>5</Size></Contents></ListBucketResult>");
    assert_int_equal(gfs_s3_xml_parse_list(doc, strlen(doc), &p, NULL), 0);
    assert_int_equal(strlen(p.entries[0].key), GFS_S3_KEY_MAX);
    gfs_s3_list_page_clear(&p);
    free(doc);

    assert_int_equal(gfs_s3_xml_parse_list(NULL, 0, &p, NULL), -EBADMSG);
}

static void test_error_ok(void **state)
{
    (void)state;
    struct gfs_s3_error e;
    const char *x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>"
                    "<Message>The specified bucket does not exist</Message>"
                    "<BucketName>nope</BucketName><RequestId>4442587FB7D0A2F9</RequestId>"
                    "<HostId>x</HostId></Error>";
    assert_int_equal(gfs_s3_xml_parse_error(x, strlen(x), &e, NULL), 0);
    assert_string_equal(e.code, "NoSuchBucket");
    assert_string_equal(e.message, "The specified bucket does not exist");
    assert_string_equal(e.request_id, "4442587FB7D0A2F9");

    /* control characters in the message are neutralised (no log injection),
     * an over-long message is cut */
    char *longmsg = repeat("<Error><Code>SlowDown</Code><Message>line1&#10;line2", "x", 5000,
                           "</Message></Error>");
    assert_int_equal(gfs_s3_xml_parse_error(longmsg, strlen(longmsg), &e, NULL), 0);
    assert_string_equal(e.code, "SlowDown");
    assert_int_equal(strncmp(e.message, "line1?line2xxx", 14), 0);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
    free(longmsg);

    /* UTF-8 is cut at a character boundary */
    char *utf = repeat("<Error><Code>X</Code><Message>", "\xc3\xa9", 300, "</Message></Error>");
    assert_int_equal(gfs_s3_xml_parse_error(utf, strlen(utf), &e, NULL), 0);
    assert_int_equal(strlen(e.message) % 2, 0);
    free(utf);
}

static void test_error_hostile(void **state)
{
    (void)state;
    static const char *const table[] = {
        "",
        "<html><body>502 Bad Gateway</body></html>",
        "<Error><Message>no code</Message></Error>",
        "<Error><Code></Code></Error>",
        "<Error><Code>Bad Code</Code></Error>",
        "<Error><Code>Code&#10;Injected</Code></Error>",
        "<Error><Code>A</Code><Code>B</Code></Error>",
        "<Error><Code><x>A</x></Code></Error>",
        "<Error><Code>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA</Code>"
        "</Error>",
        "<Error><Code>A</Code>",
        "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
        "<Error><Code>A</Code><Message>&x;</Message></Error>",
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct gfs_s3_error e;
        int rc = gfs_s3_xml_parse_error(table[i], strlen(table[i]), &e, NULL);
        if (rc != -EBADMSG)
            fail_msg("hostile error #%zu accepted: %s", i, table[i]);
        assert_string_equal(e.code, "");
        assert_string_equal(e.message, "");
    }
}

static void test_delete_build(void **state)
{
    (void)state;
    const char *keys[] = {"p/a", "p/b & <c> \"d\" '\xc3\xa9'"};
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(gfs_s3_xml_build_delete(keys, 2, &body, &len), 0);
    char *s = strndup(body, len);
    assert_non_null(strstr(s, "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"));
    assert_non_null(strstr(s, "<Quiet>true</Quiet>"));
    assert_non_null(strstr(s, "<Object><Key>p/a</Key></Object>"));
    assert_non_null(strstr(s, "<Key>p/b &amp; &lt;c&gt; \"d\" '\xc3\xa9'</Key>"));
    free(s);

    /* and it reads back, through libxml2, to the same keys */
    xmlDocPtr doc = xmlReadMemory(body, (int)len, NULL, NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    xmlNode *root = xmlDocGetRootElement(doc);
    int i = 0;
    for (xmlNode *o = root->children; o; o = o->next) {
        if (o->type != XML_ELEMENT_NODE || strcmp((const char *)o->name, "Object") != 0)
            continue;
        xmlChar *t = xmlNodeGetContent(o->children);
        assert_string_equal((const char *)t, keys[i++]);
        xmlFree(t);
    }
    assert_int_equal(i, 2);
    xmlFreeDoc(doc);
    free(body);

    const char *bad1[] = {"a\nb"};
    const char *bad2[] = {"\xff\xfe"};
    const char *bad3[] = {""};
    assert_int_equal(gfs_s3_xml_build_delete(bad1, 1, &body, &len), -EINVAL);
    assert_int_equal(gfs_s3_xml_build_delete(bad2, 1, &body, &len), -EINVAL);
    assert_int_equal(gfs_s3_xml_build_delete(bad3, 1, &body, &len), -EINVAL);
    assert_int_equal(gfs_s3_xml_build_delete(keys, 0, &body, &len), -EINVAL);
    assert_int_equal(gfs_s3_xml_build_delete(keys, GFS_S3_DELETE_MAX_KEYS + 1, &body, &len),
                     -EINVAL);
    assert_null(body);
}

static void test_delete_result(void **state)
{
    (void)state;
    struct gfs_s3_delete_result r;
    const char *ok = "<DeleteResult " NS "><Deleted><Key>a</Key></Deleted>"
                     "<Deleted><Key>b</Key></Deleted></DeleteResult>";
    assert_int_equal(gfs_s3_xml_parse_delete_result(ok, strlen(ok), &r, NULL), 0);
    assert_int_equal(r.deleted, 2);
    assert_int_equal(r.errors, 0);

    const char *quiet = "<DeleteResult " NS "/>";
    assert_int_equal(gfs_s3_xml_parse_delete_result(quiet, strlen(quiet), &r, NULL), 0);
    assert_int_equal(r.deleted + r.errors, 0);

    const char *err = "<DeleteResult><Error><Key>x/y</Key><Code>AccessDenied</Code>"
                      "<Message>Access Denied</Message></Error><Error><Key>z</Key>"
                      "<Code>InternalError</Code></Error></DeleteResult>";
    assert_int_equal(gfs_s3_xml_parse_delete_result(err, strlen(err), &r, NULL), 0);
    assert_int_equal(r.errors, 2);
    assert_string_equal(r.first_error_key, "x/y");
    assert_string_equal(r.first_error.code, "AccessDenied");
    assert_string_equal(r.first_error.message, "Access Denied");

    static const char *const hostile[] = {
        "<Error><Code>X</Code></Error>",
        "<DeleteResult><Error><Key>x</Key></Error></DeleteResult>",
        "<DeleteResult><Deleted>",
        "<!DOCTYPE d [<!ENTITY e \"x\">]><DeleteResult/>",
    };
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
        assert_int_equal(
            gfs_s3_xml_parse_delete_result(hostile[i], strlen(hostile[i]), &r, NULL), -EBADMSG);
}

/* ---- libxml2's own messages (issue 21 item 13) ---- */

static char logged[4][512];
static int nlogged;

static void capture(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    if (nlogged < 4)
        snprintf(logged[nlogged], sizeof logged[0], "%s", msg);
    nlogged++;
}

static int sentinel_calls;

static void sentinel(void *ctx, xmlErrorPtr e)
{
    (void)e;
    assert_ptr_equal(ctx, &sentinel_calls);
    sentinel_calls++;
}

/* A store that declares a non-UTF-8 encoding and sends bytes that are not
 * in it made libxml2 print "encoding error : input conversion failed ..."
 * on stderr, past the log. Now nothing reaches fd 2, the first message of
 * each document goes through the log callback, and the thread's own
 * libxml2 handler (a stand-in for another libxml2 user in the process) is
 * back in place afterwards, still working. */
static void test_errors_go_to_the_log(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "<?xml version=\"1.0\" encoding=\"SHIFT_JIS\"?><Error><Code>X\x81\x20\xff</Code>"
        "</Error>",
        "<?xml version=\"1.0\" encoding=\"EUC-JP\"?><ListBucketResult><IsTruncated>false"
        "</IsTruncated><Contents><Key>\x8e\xff\xa1</Key><Size>1</Size></Contents>"
        "</ListBucketResult>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><DeleteResult><Error><Key>\xff\xfe"
        "</Key></Error></Delete>",
        "<?xml version=\"1.0\" encoding=\"no-such-encoding\"?><ListBucketResult/>",
    };
    struct gfs_log log = {capture, NULL, GLIDEFS_LOG_DEBUG};
    char path[] = "/tmp/gfs-s3xml-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    nlogged = 0;
    struct gfs_s3_error e;
    struct gfs_s3_list_page p;
    struct gfs_s3_delete_result r;
    int rc0 = gfs_s3_xml_parse_error(docs[0], strlen(docs[0]), &e, &log);
    int rc1 = gfs_s3_xml_parse_list(docs[1], strlen(docs[1]), &p, &log);
    int rc2 = gfs_s3_xml_parse_delete_result(docs[2], strlen(docs[2]), &r, &log);
    int rc3 = gfs_s3_xml_parse_list(docs[3], strlen(docs[3]), &p, &log);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    off_t printed = lseek(fd, 0, SEEK_END);
    char what[256] = "";
    if (printed > 0) {
        ssize_t got = pread(fd, what, sizeof what - 1, 0);
        what[got > 0 ? got : 0] = '\0';
    }
    close(fd);
    if (printed != 0)
        fail_msg("libxml2 printed %lld bytes on stderr: %s", (long long)printed, what);
    assert_int_equal(rc0, -EBADMSG);
    assert_int_equal(rc1, -EBADMSG);
    assert_int_equal(rc2, -EBADMSG);
    assert_int_equal(rc3, -EBADMSG);
    /* one line per document, through the callback, naming what libxml2 said */
    assert_int_equal(nlogged, 4);
    for (int i = 0; i < 4; i++)
        assert_non_null(strstr(logged[i], "s3: the store sent XML that does not parse: "));
    assert_non_null(strstr(logged[0], "input conversion failed"));
    assert_null(strchr(logged[0], '\n'));
    /* no handler of ours is left behind: this thread's own is back, and
     * called for what is not ours */
    assert_null(xmlStructuredError);
    xmlSetStructuredErrorFunc(&sentinel_calls, sentinel);
    nlogged = 0;
    assert_int_equal(gfs_s3_xml_parse_list(docs[1], strlen(docs[1]), &p, &log), -EBADMSG);
    assert_int_equal(nlogged, 1);
    assert_int_equal(sentinel_calls, 0);
    assert_ptr_equal(xmlStructuredError, sentinel);
    xmlDocPtr d = xmlReadMemory("<a>", 3, "x.xml", NULL, 0);
    xmlFreeDoc(d);
    assert_true(sentinel_calls > 0);
    xmlSetStructuredErrorFunc(NULL, NULL);
}

int main(void)
{
    xmlInitParser();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_ok),
        cmocka_unit_test(test_list_last_page_and_empty),
        cmocka_unit_test(test_list_hostile),
        cmocka_unit_test(test_list_limits),
        cmocka_unit_test(test_error_ok),
        cmocka_unit_test(test_error_hostile),
        cmocka_unit_test(test_delete_build),
        cmocka_unit_test(test_delete_result),
        cmocka_unit_test(test_errors_go_to_the_log),
    };
    int rc = cmocka_run_group_tests_name("s3_xml", tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
