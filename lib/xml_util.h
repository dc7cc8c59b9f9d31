/*
 * xml_util.h — reading XML that comes from outside (the S3 and Azure
 * stores, STS) with libxml2 under one set of hostile-input rules, shared by
 * s3_xml.c and azure_xml.c: size bound, no network, no entity substitution,
 * no DOCTYPE at all (the parser is stopped as soon as one starts),
 * libxml2's own depth limit (no XML_PARSE_HUGE), and libxml2 never prints.
 * Plus the small checks every field parser needs.
 */
#ifndef GLIDEFS_XML_UTIL_H
#define GLIDEFS_XML_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

struct gfs_log;

/* The document, or NULL when it is empty, longer than max, malformed or
 * has a DOCTYPE. The first thing libxml2 says about it goes to log at
 * level as "<who> sent XML that does not parse: ..."; docname is the
 * name libxml2 gives the document. */
xmlDocPtr gfs_xml_parse(const char *buf, size_t len, size_t max, const char *docname,
                        const struct gfs_log *log, int level, const char *who);

static inline void gfs_xml_free_docp(xmlDocPtr *d)
{
    if (*d)
        xmlFreeDoc(*d);
}
#define CLEANUP_XMLDOC __attribute__((cleanup(gfs_xml_free_docp)))

/* An element named name. */
int gfs_xml_is_elem(const xmlNode *n, const char *name);
/* The text of a simple element: only text children allowed (no child
 * elements, no entity references), at most max bytes. malloc'd into *out;
 * -EBADMSG or -ENOMEM. */
int gfs_xml_text_of(const xmlNode *n, size_t max, char **out);
/* The same for an element that may appear once: -EBADMSG when *out was
 * set by an earlier one. */
int gfs_xml_text_once(const xmlNode *n, size_t max, char **out);
/* Copy src into dst (cap bytes), cut at a UTF-8 character boundary,
 * control characters replaced by '?' so the result can go into a log line. */
void gfs_xml_copy_safe(char *dst, size_t cap, const char *src);
/* 1 if s holds a control character. */
int gfs_xml_has_control(const char *s);
/* A non-negative decimal integer, digits only, no overflow: 0 or -EBADMSG. */
int gfs_xml_parse_u64(const char *s, uint64_t *out);

#endif
