/*
 * s3_xml.c — parse and build the S3 XML documents (see s3_xml.h) with
 * libxml2, under the hostile-input rules of xml_util.c (size bound, no
 * network, no entity substitution, no DOCTYPE, libxml2's depth limit,
 * libxml2 never prints), and validation of every field we use.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>
#include <mbedtls/platform_util.h>

#include "cleanup.h"
#include "log.h"
#include "s3_creds_parse.h"
#include "s3_xml.h"
#include "xml_util.h"

#define S3_NS "http://s3.amazonaws.com/doc/2006-03-01/"

/* ---- parsing ------------------------------------------------------------- */

static xmlDocPtr parse_as(const char *buf, size_t len, const struct gfs_log *log, int level,
                          const char *who)
{
    return gfs_xml_parse(buf, len, GFS_S3_XML_MAX, "s3-response.xml", log, level, who);
}

static xmlDocPtr parse(const char *buf, size_t len, const struct gfs_log *log, int level)
{
    return parse_as(buf, len, log, level, "s3: the store");
}

/* ---- <Error> ------------------------------------------------------------- */

/* Fill e from an <Error> element (Code required). */
static int error_fields(const xmlNode *root, struct gfs_s3_error *e, char *key, size_t keycap)
{
    int have_code = 0;
    for (const xmlNode *c = root->children; c; c = c->next) {
        char *t = NULL;
        int rc = 0;
        if (gfs_xml_is_elem(c, "Code")) {
            if (have_code)
                return -EBADMSG;
            if ((rc = gfs_xml_text_of(c, 256, &t)) != 0)
                return rc;
            /* Codes are identifiers: refuse anything else rather than log it. */
            size_t n = strlen(t);
            int ok = n > 0 && n < sizeof(e->code);
            for (size_t i = 0; ok && i < n; i++) {
                char ch = t[i];
                ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
            }
            if (ok)
                memcpy(e->code, t, n + 1);
            free(t);
            if (!ok)
                return -EBADMSG;
            have_code = 1;
        } else if (gfs_xml_is_elem(c, "Message")) {
            if ((rc = gfs_xml_text_of(c, 64 * 1024, &t)) != 0)
                return rc;
            gfs_xml_copy_safe(e->message, sizeof(e->message), t);
            free(t);
        } else if (gfs_xml_is_elem(c, "RequestId")) {
            if ((rc = gfs_xml_text_of(c, 1024, &t)) != 0)
                return rc;
            gfs_xml_copy_safe(e->request_id, sizeof(e->request_id), t);
            free(t);
        } else if (key && gfs_xml_is_elem(c, "Key")) {
            if ((rc = gfs_xml_text_of(c, GFS_S3_KEY_MAX, &t)) != 0)
                return rc;
            gfs_xml_copy_safe(key, keycap, t);
            free(t);
        } else if (gfs_xml_is_elem(c, "Region") || gfs_xml_is_elem(c, "Endpoint")) {
            /* where the bucket lives: kept only when it looks like one (the
             * client may act on it); anything else is dropped, not an error */
            int region = gfs_xml_is_elem(c, "Region");
            if ((rc = gfs_xml_text_of(c, 1024, &t)) != 0)
                return rc;
            size_t n = strlen(t);
            int ok = n > 0 && n < (region ? 33 : sizeof(e->endpoint));
            for (size_t i = 0; ok && i < n; i++) {
                char ch = t[i];
                ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                     (!region && ((ch >= 'A' && ch <= 'Z') || ch == '.' || ch == ':'));
            }
            if (ok)
                memcpy(region ? e->region : e->endpoint, t, n + 1);
            free(t);
        }
    }
    return have_code ? 0 : -EBADMSG;
}

int gfs_s3_xml_parse_error(const char *buf, size_t len, struct gfs_s3_error *out,
                           const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    CLEANUP_XMLDOC xmlDocPtr doc = parse(buf, len, log, GLIDEFS_LOG_DEBUG);
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !gfs_xml_is_elem(root, "Error"))
        return -EBADMSG;
    int rc = error_fields(root, out, NULL, 0);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- STS AssumeRoleWithWebIdentity ---------------------------------------- */

/* The only element child named name of n, or NULL (none, or more than one:
 * *dup set). */
static const xmlNode *only_child(const xmlNode *n, const char *name, int *dup)
{
    const xmlNode *found = NULL;
    for (const xmlNode *c = n->children; c; c = c->next)
        if (gfs_xml_is_elem(c, name)) {
            if (found)
                *dup = 1;
            found = c;
        }
    return *dup ? NULL : found;
}

static int sts_field(const xmlNode *creds, const char *name, size_t max, char **out)
{
    int dup = 0;
    const xmlNode *n = only_child(creds, name, &dup);
    if (!n)
        return -EBADMSG;
    int rc = gfs_xml_text_of(n, max, out);
    if (rc == 0 && (!**out || gfs_xml_has_control(*out))) {
        mbedtls_platform_zeroize(*out, strlen(*out));
        free(*out);
        *out = NULL;
        rc = -EBADMSG;
    }
    return rc;
}

int gfs_sts_xml_parse_credentials(const char *buf, size_t len, struct gfs_creds_parsed *out,
                                  struct gfs_s3_error *err, const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    if (len > GFS_CREDS_ANSWER_MAX)
        return -EBADMSG;
    CLEANUP_XMLDOC xmlDocPtr doc = parse_as(buf, len, log, GLIDEFS_LOG_WARN, "sts: STS");
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root)
        return -EBADMSG;
    int dup = 0;
    if (gfs_xml_is_elem(root, "ErrorResponse")) {
        const xmlNode *e = only_child(root, "Error", &dup);
        if (!e || error_fields(e, err, NULL, 0) != 0) {
            memset(err, 0, sizeof(*err));
            return -EBADMSG;
        }
        const xmlNode *rid = only_child(root, "RequestId", &dup);
        char *t = NULL;
        if (rid && !err->request_id[0] && gfs_xml_text_of(rid, 1024, &t) == 0)
            gfs_xml_copy_safe(err->request_id, sizeof(err->request_id), t);
        free(t);
        return 1;
    }
    if (!gfs_xml_is_elem(root, "AssumeRoleWithWebIdentityResponse"))
        return -EBADMSG;
    const xmlNode *res = only_child(root, "AssumeRoleWithWebIdentityResult", &dup);
    const xmlNode *creds = res ? only_child(res, "Credentials", &dup) : NULL;
    if (!creds)
        return -EBADMSG;
    char *exp = NULL;
    int rc = sts_field(creds, "AccessKeyId", GFS_CREDS_AKID_MAX, &out->akid);
    if (rc == 0)
        rc = sts_field(creds, "SecretAccessKey", GFS_CREDS_SECRET_MAX, &out->secret);
    if (rc == 0)
        rc = sts_field(creds, "SessionToken", GFS_CREDS_TOKEN_MAX, &out->token);
    if (rc == 0)
        rc = sts_field(creds, "Expiration", 40, &exp);
    if (rc == 0 && gfs_creds_parse_time(exp, strlen(exp), &out->expires_ms) != 0)
        rc = -EBADMSG;
    free(exp);
    if (rc != 0)
        gfs_creds_parsed_clear(out);
    return rc;
}

/* ---- ListBucketResult ---------------------------------------------------- */

void gfs_s3_list_page_clear(struct gfs_s3_list_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->entries[i].key);
    free(p->entries);
    free(p->next_token);
    memset(p, 0, sizeof(*p));
}

static int parse_contents(const xmlNode *n, struct gfs_s3_list_entry *e)
{
    char *key = NULL, *size = NULL;
    int rc = 0;
    for (const xmlNode *c = n->children; c && rc == 0; c = c->next) {
        if (gfs_xml_is_elem(c, "Key")) {
            rc = gfs_xml_text_once(c, GFS_S3_KEY_MAX, &key);
        } else if (gfs_xml_is_elem(c, "Size")) {
            rc = gfs_xml_text_once(c, 32, &size);
        }
    }
    if (rc == 0 && (!key || !size || !*key || gfs_xml_has_control(key)))
        rc = -EBADMSG;
    if (rc == 0)
        rc = gfs_xml_parse_u64(size, &e->size);
    free(size);
    if (rc != 0) {
        free(key);
        return rc;
    }
    e->key = key;
    return 0;
}

int gfs_s3_xml_parse_list(const char *buf, size_t len, struct gfs_s3_list_page *out,
                          const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    CLEANUP_XMLDOC xmlDocPtr doc = parse(buf, len, log, GLIDEFS_LOG_WARN);
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !gfs_xml_is_elem(root, "ListBucketResult"))
        return -EBADMSG;

    size_t ncontents = 0, nprefixes = 0;
    for (const xmlNode *c = root->children; c; c = c->next) {
        if (gfs_xml_is_elem(c, "Contents"))
            ncontents++;
        else if (gfs_xml_is_elem(c, "CommonPrefixes"))
            nprefixes++;
    }
    if (ncontents > GFS_S3_LIST_MAX_KEYS || nprefixes > GFS_S3_LIST_MAX_KEYS)
        return -EBADMSG;

    struct gfs_s3_list_page p = {0};
    if (ncontents && !(p.entries = calloc(ncontents, sizeof(*p.entries))))
        return -ENOMEM;
    int rc = 0, have_trunc = 0, have_count = 0;
    uint64_t key_count = 0;
    for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
        char *t = NULL;
        if (gfs_xml_is_elem(c, "Contents")) {
            rc = parse_contents(c, &p.entries[p.n]);
            if (rc == 0)
                p.n++;
        } else if (gfs_xml_is_elem(c, "IsTruncated")) {
            if (have_trunc++ || (rc = gfs_xml_text_of(c, 8, &t)) != 0) {
                rc = rc ? rc : -EBADMSG;
                break;
            }
            if (strcmp(t, "true") == 0)
                p.truncated = 1;
            else if (strcmp(t, "false") != 0)
                rc = -EBADMSG;
            free(t);
        } else if (gfs_xml_is_elem(c, "NextContinuationToken")) {
            if (p.next_token) {
                rc = -EBADMSG;
                break;
            }
            rc = gfs_xml_text_of(c, GFS_S3_TOKEN_MAX, &p.next_token);
            if (rc == 0 && (!*p.next_token || gfs_xml_has_control(p.next_token)))
                rc = -EBADMSG;
        } else if (gfs_xml_is_elem(c, "KeyCount")) {
            if (have_count++ || (rc = gfs_xml_text_of(c, 32, &t)) != 0) {
                rc = rc ? rc : -EBADMSG;
                break;
            }
            rc = gfs_xml_parse_u64(t, &key_count);
            free(t);
        }
    }
    if (rc == 0 && !have_trunc)
        rc = -EBADMSG; /* S3 always says whether there is more */
    if (rc == 0 && p.truncated && !p.next_token)
        rc = -EBADMSG; /* more pages, but no way to ask for them */
    if (rc == 0 && have_count && key_count != ncontents + nprefixes)
        rc = -EBADMSG;
    if (rc != 0) {
        gfs_s3_list_page_clear(&p);
        return rc;
    }
    if (!p.truncated) {
        free(p.next_token);
        p.next_token = NULL;
    }
    *out = p;
    return 0;
}

/* ---- DeleteObjects ------------------------------------------------------- */

int gfs_s3_xml_build_delete(const char *const *keys, size_t n, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!keys || n == 0 || n > GFS_S3_DELETE_MAX_KEYS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i] || !*keys[i] || strlen(keys[i]) > GFS_S3_KEY_MAX || gfs_xml_has_control(keys[i]) ||
            !xmlCheckUTF8((const xmlChar *)keys[i]))
            return -EINVAL;
    }
    CLEANUP_XMLDOC xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    if (!doc)
        return -ENOMEM;
    xmlNodePtr root = xmlNewNode(NULL, (const xmlChar *)"Delete");
    if (!root)
        return -ENOMEM;
    xmlDocSetRootElement(doc, root);
    xmlNsPtr ns = xmlNewNs(root, (const xmlChar *)S3_NS, NULL);
    if (!ns)
        return -ENOMEM;
    xmlSetNs(root, ns);
    if (!xmlNewChild(root, ns, (const xmlChar *)"Quiet", (const xmlChar *)"true"))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        xmlNodePtr obj = xmlNewChild(root, ns, (const xmlChar *)"Object", NULL);
        /* xmlNewTextChild escapes the key (&, <, > ...) */
        if (!obj || !xmlNewTextChild(obj, ns, (const xmlChar *)"Key", (const xmlChar *)keys[i]))
            return -ENOMEM;
    }
    xmlChar *mem = NULL;
    int size = 0;
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    if (!mem || size <= 0) {
        xmlFree(mem);
        return -ENOMEM;
    }
    char *copy = malloc((size_t)size);
    if (copy)
        memcpy(copy, mem, (size_t)size);
    xmlFree(mem);
    if (!copy)
        return -ENOMEM;
    *out = copy;
    *outlen = (size_t)size;
    return 0;
}

int gfs_s3_xml_parse_delete_result(const char *buf, size_t len,
                                   struct gfs_s3_delete_result *out, const struct gfs_log *log)
{
    memset(out, 0, sizeof(*out));
    CLEANUP_XMLDOC xmlDocPtr doc = parse(buf, len, log, GLIDEFS_LOG_WARN);
    if (!doc)
        return -EBADMSG;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !gfs_xml_is_elem(root, "DeleteResult"))
        return -EBADMSG;
    int rc = 0;
    for (const xmlNode *c = root->children; c && rc == 0; c = c->next) {
        if (gfs_xml_is_elem(c, "Deleted")) {
            out->deleted++;
        } else if (gfs_xml_is_elem(c, "Error")) {
            if (out->errors == 0) {
                rc = error_fields(c, &out->first_error, out->first_error_key,
                                  sizeof(out->first_error_key));
            } else {
                struct gfs_s3_error scratch;
                char key[GFS_S3_KEY_MAX + 1];
                memset(&scratch, 0, sizeof(scratch));
                rc = error_fields(c, &scratch, key, sizeof(key));
            }
            out->errors++;
        }
        if (out->deleted > GFS_S3_DELETE_MAX_KEYS || out->errors > GFS_S3_DELETE_MAX_KEYS)
            rc = -EBADMSG;
    }
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
