/*
 * test_azure_xml.c — the parsers of what Azure sends (lib/azure_xml.c:
 * List Blobs results and error bodies; lib/azure_batch.c: Blob Batch
 * answers) on real answers (Azurite 3.35's, Microsoft's documented
 * examples) and on hostile input: every malformed or oversized document is
 * -EBADMSG, never a crash, a hang or a wrong result. Also the request
 * builders (block list, batch body).
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

#include <libxml/parser.h>

#include "azure_batch.h"
#include "azure_xml.h"

/* ---- List Blobs ---- */

static const char azurite_list[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><EnumerationResults "
    "ServiceEndpoint=\"http://127.0.0.1:32987/devstoreaccount1\" ContainerName=\"tt1\"><Prefix/>"
    "<Marker/><MaxResults>1</MaxResults><Blobs><Blob><Name>a</Name><Properties><Creation-Time>"
    "Mon, 07 Dec 2026 05:42:57 GMT</Creation-Time><Last-Modified>Mon, 07 Dec 2026 05:42:57 GMT"
    "</Last-Modified><Etag>0x202F3B2D6417180</Etag><Content-Length>6</Content-Length>"
    "<Content-Type>application/octet-stream</Content-Type><Content-MD5>fOi+D6OTLoQPahnCuD4Rrg=="
    "</Content-MD5><BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus><LeaseState>"
    "available</LeaseState><ServerEncrypted>true</ServerEncrypted><AccessTier>Hot</AccessTier>"
    "<AccessTierInferred>true</AccessTierInferred></Properties></Blob></Blobs>"
    "<NextMarker>a</NextMarker></EnumerationResults>";

/* Microsoft's documented shape (a BOM, quoted ETags, a BlobPrefix, the last page) */
static const char doc_list[] =
    "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<EnumerationResults ServiceEndpoint=\"https://myaccount.blob.core.windows.net/\" "
    "ContainerName=\"mycontainer\">\n  <Prefix>nbd/</Prefix>\n  <MaxResults>5000</MaxResults>\n"
    "  <Blobs>\n    <Blob>\n      <Name>nbd/v/seg/0001</Name>\n      <Properties>\n"
    "        <Etag>\"0x8D4BCC2E4835CD0\"</Etag>\n        <Content-Length>4096</Content-Length>\n"
    "      </Properties>\n      <Metadata />\n    </Blob>\n"
    "    <BlobPrefix><Name>nbd/w/</Name></BlobPrefix>\n"
    "    <Blob><Name>nbd/v/seg/0002 &amp; caf\xc3\xa9</Name><Properties><Content-Length>0"
    "</Content-Length></Properties></Blob>\n  </Blobs>\n  <NextMarker />\n</EnumerationResults>";

#define BLOB(name, len) "<Blob><Name>" name "</Name><Properties><Content-Length>" len \
                        "</Content-Length></Properties></Blob>"
#define ENUM(blobs, tail) "<EnumerationResults><Blobs>" blobs "</Blobs>" tail \
                          "</EnumerationResults>"

static int list(const char *doc, struct gfs_az_list_page *p)
{
    return gfs_az_xml_parse_list(doc, strlen(doc), p, NULL);
}

static void test_list_real(void **state)
{
    (void)state;
    struct gfs_az_list_page p;
    assert_int_equal(list(azurite_list, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.entries[0].name, "a");
    assert_int_equal(p.entries[0].size, 6);
    assert_string_equal(p.next_marker, "a");
    gfs_az_list_page_clear(&p);
    assert_int_equal(list(doc_list, &p), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.entries[0].name, "nbd/v/seg/0001");
    assert_int_equal(p.entries[0].size, 4096);
    assert_string_equal(p.entries[1].name, "nbd/v/seg/0002 & caf\xc3\xa9");
    assert_int_equal(p.entries[1].size, 0);
    assert_null(p.next_marker); /* empty NextMarker: the last page */
    gfs_az_list_page_clear(&p);
    /* another declared encoding, converted */
    const char *latin = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"
        ENUM(BLOB("caf\xe9", "1"), "<NextMarker/>");
    assert_int_equal(list(latin, &p), 0);
    assert_string_equal(p.entries[0].name, "caf\xc3\xa9");
    gfs_az_list_page_clear(&p);
    /* an empty container */
    assert_int_equal(list("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>", &p),
                     0);
    assert_int_equal(p.n, 0);
    assert_null(p.next_marker);
}

static void test_list_hostile(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "not xml", "<EnumerationResults>", "<Other><Blobs/><NextMarker/></Other>",
        ENUM(BLOB("a", "1"), ""),                                 /* no NextMarker */
        ENUM(BLOB("a", "1"), "<NextMarker/><NextMarker/>"),       /* two */
        "<EnumerationResults><Blobs/><Blobs/><NextMarker/></EnumerationResults>",
        ENUM("<Blob><Properties><Content-Length>1</Content-Length></Properties></Blob>",
             "<NextMarker/>"),                                    /* no Name */
        ENUM("<Blob><Name>a</Name></Blob>", "<NextMarker/>"),     /* no Content-Length */
        ENUM("<Blob><Name>a</Name><Name>b</Name><Properties><Content-Length>1</Content-Length>"
             "</Properties></Blob>", "<NextMarker/>"),
        ENUM("<Blob><Name>a</Name><Properties><Content-Length>1</Content-Length>"
             "</Properties><Properties/></Blob>", "<NextMarker/>"),
        ENUM("<Blob><Name>a</Name><Properties><Content-Length>1</Content-Length>"
             "<Content-Length>2</Content-Length></Properties></Blob>", "<NextMarker/>"),
        ENUM(BLOB("", "1"), "<NextMarker/>"),                     /* empty name */
        ENUM(BLOB("a&#x9;b", "1"), "<NextMarker/>"),              /* control character */
        ENUM(BLOB("a<b/>c", "1"), "<NextMarker/>"),               /* element in a name */
        ENUM("<Blob><Name Encoded=\"true\">a%01</Name><Properties><Content-Length>1"
             "</Content-Length></Properties></Blob>", "<NextMarker/>"),
        ENUM(BLOB("a", "-1"), "<NextMarker/>"), ENUM(BLOB("a", "1x"), "<NextMarker/>"),
        ENUM(BLOB("a", ""), "<NextMarker/>"),
        ENUM(BLOB("a", "18446744073709551616"), "<NextMarker/>"), /* overflow */
        ENUM(BLOB("a", "1"), "<NextMarker>a&#x1;</NextMarker>"),
        /* XXE and entity expansion: refused at the DOCTYPE */
        "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
        ENUM(BLOB("&x;", "1"), "<NextMarker/>"),
        "<!DOCTYPE e [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>"
        ENUM(BLOB("&b;", "1"), "<NextMarker/>"),
        /* bytes that are not the declared encoding */
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" ENUM(BLOB("\xc3\x28", "1"), "<NextMarker/>"),
        ENUM(BLOB("\xff\xfe", "1"), "<NextMarker/>"),
    };
    struct gfs_az_list_page p;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = list(bad[i], &p);
        if (rc != -EBADMSG)
            fail_msg("case %zu: %d for %s", i, rc, bad[i]);
        assert_int_equal(p.n, 0);
        assert_null(p.entries);
    }
    assert_int_equal(gfs_az_xml_parse_list(NULL, 0, &p, NULL), -EBADMSG);
    assert_int_equal(gfs_az_xml_parse_list("x", GFS_AZ_XML_MAX + 1, &p, NULL), -EBADMSG);
}

/* Bounds: a name of 1024 bytes is fine, 1025 is not; 5000 entries are
 * fine, 5001 are not; a marker of 4097 bytes is refused; deep nesting too. */
static void test_list_bounds(void **state)
{
    (void)state;
    struct gfs_az_list_page p;
    size_t cap = 600000;
    char *doc = malloc(cap);
    assert_non_null(doc);
    char name[1100];
    for (int len = 1024; len <= 1025; len++) {
        memset(name, 'n', (size_t)len);
        name[len] = '\0';
        snprintf(doc, cap, ENUM("<Blob><Name>%s</Name><Properties><Content-Length>1"
                                "</Content-Length></Properties></Blob>", "<NextMarker/>"), name);
        assert_int_equal(list(doc, &p), len == 1024 ? 0 : -EBADMSG);
        gfs_az_list_page_clear(&p);
    }
    for (int nb = 5000; nb <= 5001; nb++) {
        size_t o = (size_t)snprintf(doc, cap, "<EnumerationResults><Blobs>");
        for (int i = 0; i < nb; i++)
            o += (size_t)snprintf(doc + o, cap - o, BLOB("b%d", "1"), i);
        snprintf(doc + o, cap - o, "</Blobs><NextMarker/></EnumerationResults>");
        assert_int_equal(list(doc, &p), nb == 5000 ? 0 : -EBADMSG);
        assert_int_equal(p.n, nb == 5000 ? 5000 : 0);
        gfs_az_list_page_clear(&p);
    }
    char marker[GFS_AZ_MARKER_MAX + 2];
    memset(marker, 'm', GFS_AZ_MARKER_MAX + 1);
    marker[GFS_AZ_MARKER_MAX + 1] = '\0';
    snprintf(doc, cap, ENUM("", "<NextMarker>%s</NextMarker>"), marker);
    assert_int_equal(list(doc, &p), -EBADMSG);
    marker[GFS_AZ_MARKER_MAX] = '\0';
    snprintf(doc, cap, ENUM("", "<NextMarker>%s</NextMarker>"), marker);
    assert_int_equal(list(doc, &p), 0);
    assert_int_equal(strlen(p.next_marker), GFS_AZ_MARKER_MAX);
    gfs_az_list_page_clear(&p);
    /* nesting deeper than libxml2's limit */
    size_t o = (size_t)snprintf(doc, cap, "<EnumerationResults><Blobs><Blob><Name>");
    for (int i = 0; i < 20000; i++)
        o += (size_t)snprintf(doc + o, cap - o, "<x>");
    snprintf(doc + o, cap - o, "</Name></Blob></Blobs><NextMarker/></EnumerationResults>");
    assert_int_equal(list(doc, &p), -EBADMSG);
    free(doc);
}

/* ---- errors ---- */

static void test_error(void **state)
{
    (void)state;
    struct gfs_az_error e;
    const char *azurite = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Error>\n"
                          "  <Code>ContainerNotFound</Code>\n  <Message>The specified container "
                          "does not exist.\nRequestId:78630202-1ecd-4c7a\nTime:2026-12-07T05:42:"
                          "57.999Z</Message>\n</Error>";
    assert_int_equal(gfs_az_xml_parse_error(azurite, strlen(azurite), &e, NULL), 0);
    assert_string_equal(e.code, "ContainerNotFound");
    assert_string_equal(e.message, "The specified container does not exist.");
    const char *auth = "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>"
                       "AuthenticationFailed</Code><Message>Server failed to authenticate the "
                       "request.</Message><AuthenticationErrorDetail>The MAC signature found in "
                       "the HTTP request 'x' is not the same as any computed signature."
                       "</AuthenticationErrorDetail></Error>";
    assert_int_equal(gfs_az_xml_parse_error(auth, strlen(auth), &e, NULL), 0);
    assert_string_equal(e.code, "AuthenticationFailed");
    static const char *const bad[] = {
        "", "<Error/>", "<Error><Message>m</Message></Error>", "<NotError><Code>X</Code></NotError>",
        "<Error><Code>A B</Code></Error>", "<Error><Code>A\"B</Code></Error>",
        "<Error><Code>X</Code><Code>Y</Code></Error>",
        "<!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Error><Code>&x;</Code></Error>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gfs_az_xml_parse_error(bad[i], strlen(bad[i]), &e, NULL), -EBADMSG);
        assert_string_equal(e.code, "");
    }
    /* a long message is cut, control characters never reach a log */
    char doc[2000];
    char msg[1000];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    snprintf(doc, sizeof doc, "<Error><Code>C</Code><Message>%s</Message></Error>", msg);
    assert_int_equal(gfs_az_xml_parse_error(doc, strlen(doc), &e, NULL), 0);
    assert_int_equal(strlen(e.message), sizeof e.message - 1);
    const char *ctl = "<Error><Code>C</Code><Message>a&#x9;[31mb</Message></Error>";
    assert_int_equal(gfs_az_xml_parse_error(ctl, strlen(ctl), &e, NULL), 0);
    assert_string_equal(e.message, "a?[31mb");
    /* XML 1.0 has no escape character: such a body is no error body */
    const char *esc = "<Error><Code>C</Code><Message>a&#x1b;[31mb</Message></Error>";
    assert_int_equal(gfs_az_xml_parse_error(esc, strlen(esc), &e, NULL), -EBADMSG);
}

/* ---- Put Block List ---- */

static void test_block_list(void **state)
{
    (void)state;
    const char *ids[] = {"QUFB", "QkJC"};
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(gfs_az_xml_build_block_list(ids, 2, &out, &len), 0);
    const char *want = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>QUFB"
                       "</Latest><Latest>QkJC</Latest></BlockList>";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    free(out);
    const char *bad[] = {"QUFB", "<x>"};
    assert_int_equal(gfs_az_xml_build_block_list(bad, 2, &out, &len), -EINVAL);
    assert_int_equal(gfs_az_xml_build_block_list(ids, 0, &out, &len), -EINVAL);
    const char *empty[] = {""};
    assert_int_equal(gfs_az_xml_build_block_list(empty, 1, &out, &len), -EINVAL);
}

/* ---- Blob Batch ---- */

static void test_batch_build(void **state)
{
    (void)state;
    const char *h0[] = {"x-ms-date: D", "Content-Length: 0", "Authorization: SharedKey a:s"};
    const char *h1[] = {"x-ms-date: D", "Content-Length: 0"};
    struct gfs_az_batch_sub sub[] = {{"DELETE", "/c/k0", h0, 3},
                                     {"DELETE", "/c/k1?sv=1&sig=x", h1, 2}};
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(gfs_az_batch_build("batch_b", sub, 2, &out, &len), 0);
    const char *want =
        "--batch_b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        "Content-ID: 0\r\n\r\nDELETE /c/k0 HTTP/1.1\r\nx-ms-date: D\r\nContent-Length: 0\r\n"
        "Authorization: SharedKey a:s\r\n\r\n"
        "--batch_b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n\r\nDELETE /c/k1?sv=1&sig=x HTTP/1.1\r\nx-ms-date: D\r\n"
        "Content-Length: 0\r\n\r\n--batch_b--\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    free(out);
    assert_int_equal(gfs_az_batch_build("bad boundary", sub, 2, &out, &len), -EINVAL);
    assert_int_equal(gfs_az_batch_build("", sub, 2, &out, &len), -EINVAL);
    assert_int_equal(gfs_az_batch_build("b", sub, 0, &out, &len), -EINVAL);
    assert_int_equal(gfs_az_batch_build("b", sub, GFS_AZ_BATCH_MAX + 1, &out, &len), -EINVAL);
    struct gfs_az_batch_sub s2[] = {{"DELETE", "/c/a b", h1, 2}};
    assert_int_equal(gfs_az_batch_build("b", s2, 1, &out, &len), -EINVAL);
    const char *inj[] = {"x-ms-date: D\r\nX-Evil: 1"};
    struct gfs_az_batch_sub s3[] = {{"DELETE", "/c/a", inj, 1}};
    assert_int_equal(gfs_az_batch_build("b", s3, 1, &out, &len), -EINVAL);
    const char *nocolon[] = {"no colon"};
    struct gfs_az_batch_sub s4[] = {{"DELETE", "/c/a", nocolon, 1}};
    assert_int_equal(gfs_az_batch_build("b", s4, 1, &out, &len), -EINVAL);
}

/* What Azurite 3.35 answered to a batch of two deletes (one blob missing). */
static const char azurite_ct[] = "multipart/mixed; boundary=batch_c8b15d1c-9466-41a6-ad96-a4e06c60cfde";
static const char azurite_batch[] =
    "--batch_c8b15d1c-9466-41a6-ad96-a4e06c60cfde\r\nContent-Type: application/http\r\n"
    "Content-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\nServer: Azurite-Blob/3.35.0\r\n"
    "x-ms-request-id: 35ebffe7\r\nx-ms-version: 2025-11-05\r\ndate: Mon, 07 Dec 2026 05:43:02 GMT"
    "\r\nx-ms-delete-type-permanent: true\r\n\r\n"
    "--batch_c8b15d1c-9466-41a6-ad96-a4e06c60cfde\r\nContent-Type: application/http\r\n"
    "Content-ID: 1\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\nServer: Azurite-Blob"
    "/3.35.0\r\nx-ms-error-code: BlobNotFound\r\nx-ms-request-id: 0f447a08\r\ncontent-type: "
    "application/xml\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Error>"
    "\n  <Code>BlobNotFound</Code>\n  <Message>The specified blob does not exist.\nRequestId:0f4"
    "</Message>\n</Error>\r\n\r\n--batch_c8b15d1c-9466-41a6-ad96-a4e06c60cfde--";

/* Microsoft's documented answer: its own boundary, parts out of order, a
 * trailing CRLF after the close delimiter. */
static const char doc_ct[] = "multipart/mixed; boundary=\"batchresponse_66925647-d0cb-4109\"";
static const char doc_batch[] =
    "--batchresponse_66925647-d0cb-4109\r\nContent-Type: application/http\r\nContent-ID: 1\r\n"
    "\r\nHTTP/1.1 403 Forbidden\r\nx-ms-error-code: AuthorizationPermissionMismatch\r\n"
    "x-ms-request-id: 778fdc83\r\nx-ms-version: 2018-11-09\r\nContent-Length: 0\r\n\r\n"
    "--batchresponse_66925647-d0cb-4109\r\nContent-Type: application/http\r\nContent-ID: 0\r\n"
    "\r\nHTTP/1.1 202 Accepted\r\nx-ms-delete-type-permanent: true\r\n"
    "x-ms-request-id: 778fdc83\r\nx-ms-version: 2018-11-09\r\n\r\n"
    "--batchresponse_66925647-d0cb-4109--\r\n";

static int batch(const char *ct, const char *body, size_t nreq, struct gfs_az_batch_reply *r,
                 const struct gfs_az_batch_reply **whole)
{
    return gfs_az_batch_parse(ct, body, strlen(body), nreq, r, whole);
}

static void test_batch_real(void **state)
{
    (void)state;
    struct gfs_az_batch_reply r[4];
    const struct gfs_az_batch_reply *whole = (void *)1;
    assert_int_equal(batch(azurite_ct, azurite_batch, 2, r, &whole), 0);
    assert_null(whole);
    assert_int_equal(r[0].status, 202);
    assert_string_equal(r[0].code, "");
    assert_int_equal(r[1].status, 404);
    assert_string_equal(r[1].code, "BlobNotFound");
    assert_int_equal(batch(doc_ct, doc_batch, 2, r, &whole), 0);
    assert_int_equal(r[0].status, 202);
    assert_int_equal(r[1].status, 403);
    assert_string_equal(r[1].code, "AuthorizationPermissionMismatch");
    /* the parts must match the requests sent */
    assert_int_equal(batch(azurite_ct, azurite_batch, 3, r, &whole), -EBADMSG);
    assert_int_equal(batch(azurite_ct, azurite_batch, 1, r, &whole), -EBADMSG);
    /* LF-only line ends, a preamble and an epilogue */
    const char *lf = "preamble\n--b\nContent-Type: application/http\n\nHTTP/1.1 202 Accepted\n"
                     "\n--b\nContent-Type: application/http\n\nHTTP/1.1 404 NF\nx-ms-error-code: "
                     "BlobNotFound\n--b--\nepilogue";
    assert_int_equal(batch("multipart/mixed;boundary=b", lf, 2, r, &whole), 0);
    assert_int_equal(r[0].status, 202);
    assert_int_equal(r[1].status, 404);
    /* the batch refused as a whole: one part without Content-ID */
    const char *refused = "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 One of the "
                          "request inputs is not valid.\r\nx-ms-error-code: InvalidInput\r\n\r\n"
                          "--b--";
    assert_int_equal(batch("multipart/mixed; boundary=b", refused, 3, r, &whole), 0);
    assert_non_null(whole);
    assert_int_equal(whole->status, 400);
    assert_string_equal(whole->code, "InvalidInput");
    assert_int_equal(r[1].status, 0);
}

#define PART(id, status) "--b\r\nContent-Type: application/http\r\nContent-ID: " id \
                         "\r\n\r\nHTTP/1.1 " status "\r\n\r\n"

static void test_batch_hostile(void **state)
{
    (void)state;
    struct gfs_az_batch_reply r[3];
    const struct gfs_az_batch_reply *whole;
    const char *ct = "multipart/mixed; boundary=b";
    static const char *const bad_ct[] = {
        NULL, "", "text/plain; boundary=b", "multipart/mixed", "multipart/mixed; boundary=",
        "multipart/mixed; boundary=\"b", "multipart/mixed; boundary=a b",
        "multipart/mixed; boundary=b; boundary=c", "multipart/mixed; foo",
        "multipart/mixed; boundary=" "0123456789012345678901234567890123456789012345678901234567890123456789x",
    };
    const char *ok = PART("0", "202 Accepted") PART("1", "202 Accepted") "--b--";
    for (size_t i = 0; i < sizeof bad_ct / sizeof bad_ct[0]; i++)
        assert_int_equal(batch(bad_ct[i], ok, 2, r, &whole), -EBADMSG);
    assert_int_equal(batch(ct, ok, 2, r, &whole), 0);
    static const char *const bad[] = {
        "",
        "no delimiter at all",
        PART("0", "202 Accepted") PART("1", "202 Accepted"),          /* no close */
        PART("0", "202 Accepted") "--b",                             /* cut after a delimiter */
        PART("0", "202 Accepted") PART("0", "202 Accepted") "--b--", /* id twice */
        PART("0", "202 Accepted") PART("2", "202 Accepted") "--b--", /* id out of range */
        PART("0", "202 Accepted") PART("x", "202 Accepted") "--b--", /* id not a number */
        PART("0", "202 Accepted") PART("1", "202 Accepted") PART("0", "202 A") "--b--",
        PART("0", "202 Accepted")
        "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 202 A\r\n\r\n--b--", /* mixed */
        PART("0", "2O2 Accepted") PART("1", "202 Accepted") "--b--", /* status */
        PART("0", "099 Low") PART("1", "202 Accepted") "--b--",
        PART("0", "202Accepted") PART("1", "202 Accepted") "--b--",
        "--b\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 A\r\n"
        "no colon here\r\n\r\n" PART("1", "202 A") "--b--",
        "--b\r\nContent-Type: text/plain\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 A\r\n\r\n"
        PART("1", "202 A") "--b--",
        "--b\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 A\r\n\r\n" PART("1", "202 A") "--b--",
        "--b\r\nContent-Type: application/http\r\nContent-ID: 0\r\n" PART("1", "202 A") "--b--",
        "--b\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 404 N\r\n"
        "x-ms-error-code: A\r\nx-ms-error-code: B\r\n\r\n" PART("1", "202 A") "--b--",
        "--bx\r\n" PART("0", "202 A") PART("1", "202 A") "--b--",   /* junk after a delimiter */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = batch(ct, bad[i], 2, r, &whole);
        if (rc != -EBADMSG)
            fail_msg("case %zu: %d", i, rc);
        assert_int_equal(r[0].status, 0);
        assert_int_equal(r[1].status, 0);
    }
    /* a line longer than the parser takes */
    size_t n = 20000;
    char *big = malloc(n + 200);
    assert_non_null(big);
    int o = snprintf(big, 200, "--b\r\nContent-Type: application/http\r\nContent-ID: 0\r\nX: ");
    memset(big + o, 'a', n);
    snprintf(big + o + n, 200, "\r\n\r\nHTTP/1.1 202 A\r\n\r\n--b--");
    assert_int_equal(batch(ct, big, 1, r, &whole), -EBADMSG);
    free(big);
    assert_int_equal(gfs_az_batch_parse(ct, ok, GFS_AZ_BATCH_BODY_MAX + 1, 2, r, &whole),
                     -EBADMSG);
    assert_int_equal(gfs_az_batch_parse(ct, ok, strlen(ok), 0, r, &whole), -EINVAL);
}

int main(void)
{
    xmlInitParser();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_real),
        cmocka_unit_test(test_list_hostile),
        cmocka_unit_test(test_list_bounds),
        cmocka_unit_test(test_error),
        cmocka_unit_test(test_block_list),
        cmocka_unit_test(test_batch_build),
        cmocka_unit_test(test_batch_real),
        cmocka_unit_test(test_batch_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
