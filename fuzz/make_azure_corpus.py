#!/usr/bin/env python3
"""make_azure_corpus.py - writes the seed corpus of fuzz_azure.c into
corpus-azure/: a selector byte ('L' List Blobs, 'E' error body, 'B' Blob
Batch answer: then a byte n for n+1 subrequests and the Content-Type line),
then what Azurite 3.35 and Microsoft's documentation show, plus crafted
answers the parsers must refuse. Run it again after changing it; the files
are committed."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus-azure")


def blob(name, size):
    return ("<Blob><Name>%s</Name><Properties><Etag>0x8D4BCC2E4835CD0</Etag>"
            "<Content-Length>%d</Content-Length></Properties></Blob>" % (name, size))


def enum(blobs, tail="<NextMarker/>"):
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><EnumerationResults '
            'ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c">'
            "<Prefix>nbd/</Prefix><MaxResults>5000</MaxResults><Blobs>%s</Blobs>%s"
            "</EnumerationResults>" % ("".join(blobs), tail))


def part(cid, status, extra=""):
    return ("--b\r\nContent-Type: application/http\r\n%s\r\nHTTP/1.1 %s\r\n%s\r\n"
            % ("Content-ID: %s\r\n" % cid if cid is not None else "", status, extra))


SEEDS = {
    "list_two": "L" + enum([blob("nbd/v/seg/0000000000000001-0000000000000001", 4096),
                            blob("nbd/v/volume.json", 300)]),
    "list_next_marker": "L" + enum([blob("a", 1)], "<NextMarker>2!88!MDAwMDIx</NextMarker>"),
    "list_empty": "L<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>",
    "list_prefix_entry": "L" + enum([blob("a", 1), "<BlobPrefix><Name>d/</Name></BlobPrefix>"]),
    "list_bad_no_marker": "L" + enum([blob("a", 1)], ""),
    "list_bad_encoded": "L" + enum(['<Blob><Name Encoded="true">a%01</Name><Properties>'
                                    "<Content-Length>1</Content-Length></Properties></Blob>"]),
    "list_bad_xxe": 'L<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    + enum([blob("&x;", 1)]),
    "list_bad_control": "L" + enum([blob("a&#x9;b", 1)]),
    "list_bad_size": "L" + enum([blob("a", 0)]).replace("<Content-Length>0", "<Content-Length>-1"),
    "error_container": 'E<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Error>\n'
                       "  <Code>ContainerNotFound</Code>\n  <Message>The specified container does"
                       " not exist.\nRequestId:78630202\nTime:2026-12-07T05:42:57.999Z</Message>"
                       "\n</Error>",
    "error_auth": "E\xef\xbb\xbf<Error><Code>AuthenticationFailed</Code><Message>Server failed"
                  "</Message><AuthenticationErrorDetail>x</AuthenticationErrorDetail></Error>",
    "error_bad_code": "E<Error><Code>A B</Code></Error>",
    "batch_two": "B\x01multipart/mixed; boundary=b\n" + part(0, "202 Accepted",
                 "x-ms-delete-type-permanent: true\r\n") + part(1, "404 The specified blob does "
                 "not exist.", "x-ms-error-code: BlobNotFound\r\ncontent-type: application/xml\r\n"
                 "\r\n<Error><Code>BlobNotFound</Code></Error>\r\n") + "--b--",
    "batch_doc": 'B\x01multipart/mixed; boundary="batchresponse_6692"\n'
                 + (part(1, "403 Forbidden", "x-ms-error-code: AuthorizationPermissionMismatch\r\n")
                    + part(0, "202 Accepted") + "--b--\r\n").replace("--b", "--batchresponse_6692"),
    "batch_whole": "B\x02multipart/mixed; boundary=b\n" + part(None, "400 Bad",
                   "x-ms-error-code: InvalidInput\r\n") + "--b--",
    "batch_bad_dup_id": "B\x01multipart/mixed; boundary=b\n" + part(0, "202 A") + part(0, "202 A")
                        + "--b--",
    "batch_bad_unclosed": "B\x01multipart/mixed; boundary=b\n" + part(0, "202 A") + part(1, "202 A"),
}

os.makedirs(OUT, exist_ok=True)
for name, text in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(text.encode("latin-1") if not any(ord(c) > 255 for c in text)
                else text.encode("utf-8"))
