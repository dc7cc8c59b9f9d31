/*
 * fuzz_takeover.c — libFuzzer target for the takeover state message a new
 * glidefsd reads from the old one (daemon/takeover_proto.c): the successor
 * trusts nothing in it. An accepted message must hold only what the decoder
 * promises (valid names, known kinds and flags, unique ids below next_id,
 * connection -> export references in range, pending bytes inside the
 * buffer), and encoding it again must give back exactly the same bytes.
 * The HELLO/ACK/COMMIT decoders get the first 16 bytes too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "glidefs/glidefs.h"
#include "takeover_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= GD_TKO_HELLO_SIZE) {
        uint32_t v;
        (void)gd_tko_decode_hello(data, &v);
        (void)gd_tko_decode_ack(data, &v);
        (void)gd_tko_decode_commit(data);
    }
    struct gd_tko_state st;
    char err[256];
    if (gd_tko_decode_state(data, size, &st, err, sizeof err) == 0) {
        if (st.nlisten > GD_TKO_MAX_LISTEN)
            abort();
        for (uint32_t i = 0; i < st.nexports; i++)
            if (!glidefs_name_valid(st.exports[i].name))
                abort();
        for (uint32_t i = 0; i < st.nconns; i++) {
            const struct gd_tko_conn *c = &st.conns[i];
            if (c->export_idx >= st.nexports || c->id == 0 || c->id >= st.next_id ||
                c->pending_len > GD_TKO_MAX_PENDING)
                abort();
            if (c->pending_len && (c->pending < data || c->pending + c->pending_len > data + size))
                abort();
        }
        uint8_t *out = NULL;
        size_t len = 0;
        if (gd_tko_encode_state(&st, &out, &len) != 0 || len != size ||
            memcmp(out, data, size) != 0)
            abort();
        free(out);
    }
    gd_tko_state_free(&st);
    return 0;
}
