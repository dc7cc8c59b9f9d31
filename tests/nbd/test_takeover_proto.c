/*
 * test_takeover_proto.c — cmocka tests of the takeover messages
 * (daemon/takeover_proto.c): a state message survives encode + decode
 * unchanged, and the decoder refuses every inconsistency a broken or
 * hostile predecessor could send (truncation at every length, trailing
 * bytes, counts, names, ids, flags, references, sizes, durability modes).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "takeover_proto.h"

static const uint8_t pending[] = { 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 2, 3 };

/* Two listeners and the control socket, two exports, two connections. */
static void sample(struct gd_tko_state *st, struct gd_tko_export *ex, struct gd_tko_conn *cs)
{
    memset(st, 0, sizeof *st);
    memset(ex, 0, 2 * sizeof *ex);
    memset(cs, 0, 2 * sizeof *cs);
    st->next_id = 42;
    st->nlisten = 3;
    st->listen[0].kind = GD_TKO_LISTEN_UNIX;
    snprintf(st->listen[0].path, sizeof st->listen[0].path, "/run/glidefs.sock");
    st->listen[1].kind = GD_TKO_LISTEN_TCP;
    st->listen[2].kind = GD_TKO_LISTEN_CTL;
    snprintf(st->listen[2].path, sizeof st->listen[2].path, "@glidefsd-takeover-00");
    st->nexports = 2;
    st->exports = ex;
    snprintf(ex[0].name, sizeof ex[0].name, "vm1");
    snprintf(ex[1].name, sizeof ex[1].name, "vm-2");
    ex[1].open_flags = GLIDEFS_OPEN_READONLY;
    st->nconns = 2;
    st->conns = cs;
    cs[0] = (struct gd_tko_conn){ .id = 3, .size = 1u << 26, .eflags = 0x1ff,
                                  .flags = GD_TKO_CONN_STRUCTURED | GD_TKO_CONN_META_ALLOC,
                                  .export_idx = 0 };
    snprintf(cs[0].peer, sizeof cs[0].peer, "unix");
    cs[1] = (struct gd_tko_conn){ .id = 41, .size = 4096, .eflags = 0x10b, .export_idx = 1,
                                  .pending = pending, .pending_len = sizeof pending };
    snprintf(cs[1].peer, sizeof cs[1].peer, "127.0.0.1:4000");
}

/* 0 when buf decodes. */
static int decodes(const uint8_t *buf, size_t len)
{
    struct gd_tko_state st;
    char err[256] = "";
    int rc = gd_tko_decode_state(buf, len, &st, err, sizeof err);
    if (rc == 0)
        assert_string_equal(err, ""); /* no message on success */
    else
        assert_true(err[0] != '\0' || rc == -ENOMEM); /* a reason on failure */
    gd_tko_state_free(&st);
    return rc;
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct gd_tko_state st, back;
    struct gd_tko_export ex[2];
    struct gd_tko_conn cs[2];
    sample(&st, ex, cs);
    uint8_t *buf = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(gd_tko_encode_state(&st, &buf, &len), 0);
    uint32_t body, nfds;
    char err[256];
    assert_int_equal(gd_tko_decode_header(buf, &body, &nfds, err, sizeof err), 0);
    assert_int_equal(nfds, 1 + 3 + 2);
    assert_int_equal(body + GD_TKO_HDR_SIZE, len);
    assert_int_equal(gd_tko_decode_state(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(back.next_id, 42);
    assert_int_equal(back.nlisten, 3);
    assert_string_equal(back.listen[0].path, "/run/glidefs.sock");
    assert_int_equal(back.listen[1].kind, GD_TKO_LISTEN_TCP);
    assert_string_equal(back.listen[2].path, "@glidefsd-takeover-00");
    assert_string_equal(back.exports[1].name, "vm-2");
    assert_int_equal(back.exports[1].open_flags, GLIDEFS_OPEN_READONLY);
    assert_int_equal(back.conns[0].id, 3);
    assert_int_equal(back.conns[0].eflags, 0x1ff);
    assert_int_equal(back.conns[0].flags, GD_TKO_CONN_STRUCTURED | GD_TKO_CONN_META_ALLOC);
    assert_int_equal(back.conns[1].size, 4096);
    assert_string_equal(back.conns[1].peer, "127.0.0.1:4000");
    assert_int_equal(back.conns[1].pending_len, sizeof pending);
    assert_memory_equal(back.conns[1].pending, pending, sizeof pending);
    assert_int_equal(gd_tko_encode_state(&back, &again, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(again, buf, len);
    gd_tko_state_free(&back);
    free(buf);
    free(again);
}

static void test_truncated_and_trailing(void **state)
{
    (void)state;
    struct gd_tko_state st;
    struct gd_tko_export ex[2];
    struct gd_tko_conn cs[2];
    sample(&st, ex, cs);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(gd_tko_encode_state(&st, &buf, &len), 0);
    assert_int_equal(decodes(buf, len), 0);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(decodes(buf, n), -EPROTO); /* the header's length disagrees */
    /* a shorter body that says so: every cut inside an entry is caught too */
    for (size_t n = GD_TKO_HDR_SIZE; n < len; n++) {
        uint8_t *cut = malloc(n);
        memcpy(cut, buf, n);
        uint32_t body = (uint32_t)(n - GD_TKO_HDR_SIZE);
        cut[12] = (uint8_t)(body >> 24);
        cut[13] = (uint8_t)(body >> 16);
        cut[14] = (uint8_t)(body >> 8);
        cut[15] = (uint8_t)body;
        assert_int_equal(decodes(cut, n), -EPROTO);
        free(cut);
    }
    uint8_t *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 0;
    more[15]++; /* the body length counts the extra byte */
    assert_int_equal(decodes(more, len + 1), -EPROTO);
    free(more);
    free(buf);
}

/* Encode st (the encoder checks only sizes) and expect the decoder to refuse. */
static void refused(const struct gd_tko_state *st)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(gd_tko_encode_state(st, &buf, &len), 0);
    assert_int_equal(decodes(buf, len), -EPROTO);
    free(buf);
}

static void test_inconsistent(void **state)
{
    (void)state;
    struct gd_tko_state st;
    struct gd_tko_export ex[2];
    struct gd_tko_conn cs[2];
    sample(&st, ex, cs);
    cs[1].export_idx = 2; /* no such export */
    refused(&st);
    sample(&st, ex, cs);
    cs[1].id = cs[0].id; /* one id twice */
    refused(&st);
    sample(&st, ex, cs);
    cs[1].id = st.next_id; /* not below next_id */
    refused(&st);
    sample(&st, ex, cs);
    cs[0].id = 0;
    refused(&st);
    sample(&st, ex, cs);
    snprintf(ex[0].name, sizeof ex[0].name, "../etc"); /* the export name rule */
    refused(&st);
    sample(&st, ex, cs);
    snprintf(ex[1].name, sizeof ex[1].name, "vm1"); /* one export twice */
    refused(&st);
    sample(&st, ex, cs);
    ex[0].open_flags = GLIDEFS_OPEN_CREATE; /* only READONLY may travel */
    refused(&st);
    sample(&st, ex, cs);
    cs[0].flags = 0x80;
    refused(&st);
    sample(&st, ex, cs);
    cs[0].flags = GD_TKO_CONN_META_ALLOC; /* a meta context needs structured replies */
    refused(&st);
    sample(&st, ex, cs);
    cs[0].size = 1000; /* not sectors */
    refused(&st);
    sample(&st, ex, cs);
    cs[0].eflags = 0; /* HAS_FLAGS is always sent */
    refused(&st);
    sample(&st, ex, cs);
    st.listen[0].kind = 7;
    refused(&st);
    sample(&st, ex, cs);
    snprintf(st.listen[0].path, sizeof st.listen[0].path, "relative.sock");
    refused(&st);
    sample(&st, ex, cs);
    snprintf(st.listen[1].path, sizeof st.listen[1].path, "/tcp-has-no-path");
    refused(&st);
    sample(&st, ex, cs);
    st.listen[0].kind = GD_TKO_LISTEN_CTL; /* two control sockets */
    snprintf(st.listen[0].path, sizeof st.listen[0].path, "@other");
    refused(&st);
    sample(&st, ex, cs);
    snprintf(st.listen[2].path, sizeof st.listen[2].path, "/a/file"); /* not abstract */
    refused(&st);
}

static void test_header_counts(void **state)
{
    (void)state;
    struct gd_tko_state st;
    struct gd_tko_export ex[2];
    struct gd_tko_conn cs[2];
    sample(&st, ex, cs);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(gd_tko_encode_state(&st, &buf, &len), 0);
    uint32_t body, nfds;
    char err[256];
    buf[19]++; /* descriptors announced */
    assert_int_equal(gd_tko_decode_header(buf, &body, &nfds, err, sizeof err), -EPROTO);
    buf[19]--;
    buf[12] = 0x7f; /* a body over the limit */
    assert_int_equal(gd_tko_decode_header(buf, &body, &nfds, err, sizeof err), -EPROTO);
    buf[12] = 0;
    buf[8 + 3] = 2; /* another version */
    assert_int_equal(gd_tko_decode_header(buf, &body, &nfds, err, sizeof err), -EPROTO);
    buf[8 + 3] = 1;
    /* more connections than the body can hold: refused before allocating */
    buf[24] = 0;
    buf[25] = 1;
    buf[26] = 0;
    buf[27] = 0;
    buf[19] = (uint8_t)(1 + 3 + 65536);
    buf[18] = 1;
    assert_int_equal(decodes(buf, len), -EPROTO);
    free(buf);
}

/* Durability set through the REST API travels after the connections, only
 * when there is any: the message without it is a stage-1 one and decodes. */
static void test_durability(void **state)
{
    (void)state;
    struct gd_tko_state st, back;
    struct gd_tko_export ex[2];
    struct gd_tko_conn cs[2];
    struct gd_tko_durability du[2];
    sample(&st, ex, cs);
    uint8_t *plain = NULL, *buf = NULL;
    size_t plain_len = 0, len = 0;
    assert_int_equal(gd_tko_encode_state(&st, &plain, &plain_len), 0);
    memset(du, 0, sizeof du);
    snprintf(du[0].name, sizeof du[0].name, "vm1");
    du[0].d = (struct glidefs_durability){ GLIDEFS_DURABILITY_STORE, 0, 0 };
    snprintf(du[1].name, sizeof du[1].name, "not-open-now");
    du[1].d = (struct glidefs_durability){ GLIDEFS_DURABILITY_LOCAL, 5000, 1u << 30 };
    st.durs = du;
    st.ndurs = 2;
    assert_int_equal(gd_tko_encode_state(&st, &buf, &len), 0);
    assert_true(len > plain_len);
    assert_memory_equal(buf + GD_TKO_HDR_SIZE, plain + GD_TKO_HDR_SIZE,
                        plain_len - GD_TKO_HDR_SIZE);
    char err[256] = "";
    assert_int_equal(gd_tko_decode_state(buf, len, &back, err, sizeof err), 0);
    assert_int_equal(back.ndurs, 2);
    assert_string_equal(back.durs[0].name, "vm1");
    assert_int_equal(back.durs[0].d.mode, GLIDEFS_DURABILITY_STORE);
    assert_string_equal(back.durs[1].name, "not-open-now");
    assert_int_equal(back.durs[1].d.max_unsynced_ms, 5000);
    assert_true(back.durs[1].d.max_unsynced_bytes == 1u << 30);
    gd_tko_state_free(&back);
    assert_int_equal(gd_tko_decode_state(plain, plain_len, &back, err, sizeof err), 0);
    assert_int_equal(back.ndurs, 0);
    assert_null(back.durs);
    gd_tko_state_free(&back);
    /* every cut inside the section (its body length adjusted) is refused */
    for (size_t n = plain_len + 1; n < len; n++) {
        uint8_t *cut = malloc(n);
        memcpy(cut, buf, n);
        uint32_t body = (uint32_t)(n - GD_TKO_HDR_SIZE);
        cut[12] = (uint8_t)(body >> 24);
        cut[13] = (uint8_t)(body >> 16);
        cut[14] = (uint8_t)(body >> 8);
        cut[15] = (uint8_t)body;
        assert_int_equal(decodes(cut, n), -EPROTO);
        free(cut);
    }
    buf[plain_len] = 'X'; /* not the section's tag: trailing garbage */
    assert_int_equal(decodes(buf, len), -EPROTO);
    free(buf);
    du[1].d.mode = 2; /* no such mode */
    refused(&st);
    du[1].d.mode = GLIDEFS_DURABILITY_LOCAL;
    snprintf(du[1].name, sizeof du[1].name, "vm1"); /* one name twice */
    refused(&st);
    snprintf(du[1].name, sizeof du[1].name, "a/b"); /* the export name rule */
    refused(&st);
    snprintf(du[1].name, sizeof du[1].name, "vm2");
    assert_int_equal(gd_tko_encode_state(&st, &buf, &len), 0);
    buf[plain_len + 7] = 0; /* a count of 0 with the tag */
    assert_int_equal(decodes(buf, len), -EPROTO);
    buf[plain_len + 7] = 200; /* more entries than the bytes left can hold */
    assert_int_equal(decodes(buf, len), -EPROTO);
    free(buf);
    free(plain);
}

static void test_small_messages(void **state)
{
    (void)state;
    uint8_t m[16];
    uint32_t v = 0;
    gd_tko_encode_hello(m, 1234);
    assert_int_equal(gd_tko_decode_hello(m, &v), 0);
    assert_int_equal(v, 1234);
    assert_int_equal(gd_tko_decode_ack(m, &v), -EPROTO);
    assert_int_equal(gd_tko_decode_commit(m), -EPROTO);
    m[11] = 9;
    assert_int_equal(gd_tko_decode_hello(m, &v), -EPROTONOSUPPORT);
    gd_tko_encode_ack(m, 0);
    assert_int_equal(gd_tko_decode_ack(m, &v), 0);
    assert_int_equal(v, 0);
    gd_tko_encode_commit(m);
    assert_int_equal(gd_tko_decode_commit(m), 0);
    m[15] = 1;
    assert_int_equal(gd_tko_decode_commit(m), -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_inconsistent),
        cmocka_unit_test(test_header_counts),
        cmocka_unit_test(test_durability),
        cmocka_unit_test(test_small_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
