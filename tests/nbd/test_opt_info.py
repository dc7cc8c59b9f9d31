#!/usr/bin/python3
"""test_opt_info.py - NBD_OPT_INFO is a question: it creates nothing (issue
21, item 9).

Before, INFO opened the export like GO does, and so created it: one
connection made 255 volumes in 3.3 s, each with volume.json, a lease and a
cache directory. Now only NBD_OPT_GO / NBD_OPT_EXPORT_NAME create; INFO on a
name that has no volume yet answers with the size its first GO will give it
(servers.nbd.auto_create_size), writable, and touches neither the store nor
the cache.

Checked with libnbd in option mode (nbdsh's opt_info): 300 INFOs on new
names from two connections leave the store's nbd/ and the cache empty and
the daemon's RSS where it was (+4 MiB at most); the size INFO gives is what
GO then creates; INFO on an open export gives its size, and so does INFO
on a volume in the store that is not open here gives its size too; INFO on
an invalid name is refused (NBD_REP_ERR_UNKNOWN) like GO.

usage: test_opt_info.py GLIDEFSD
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need_libnbd()
import nbd  # noqa: E402

t = nbdtest.Checker()
MiB = 1024 * 1024


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def listing(path):
    """The names in path but the daemon's own dot files (.lock, .instance):
    a volume's directory and an export name never start with a dot."""
    return sorted(n for n in os.listdir(path) if not n.startswith(".")) \
        if os.path.isdir(path) else []


def few(names):
    """A list for a message: its length and the first three."""
    return f"{len(names)}: {names[:3]}{' ...' if len(names) > 3 else ''}"


def info(d, name):
    """(size, read-only) from one NBD_OPT_INFO, or the nbd.Error."""
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_unix(d.sock)
    try:
        h.set_export_name(name)
        h.opt_info()
        return h.get_size(), bool(h.is_read_only())
    except nbd.Error as e:
        return e
    finally:
        h.opt_abort()


def main():
    with nbdtest.Daemon(size="48M", log_level="info") as d:
        d.start()
        store_nbd = os.path.join(d.store, "nbd")
        # warm up (first connection, thread stacks) before measuring memory
        t.eq(info(d, "warmup"), (48 * MiB, False), "INFO on a new name: the size GO would give")
        rss0 = rss_kib(d.proc.pid)

        sizes = set()
        for k in range(2):  # (a session may have at most 256 options)
            h = nbd.NBD()
            h.set_opt_mode(True)
            h.connect_unix(d.sock)
            for i in range(150 * k, 150 * (k + 1)):
                h.set_export_name(f"query-{i}")
                h.opt_info()
                sizes.add((h.get_size(), bool(h.is_read_only())))
            h.opt_abort()
        rss1 = rss_kib(d.proc.pid)
        t.eq(sizes, {(48 * MiB, False)}, "300 INFOs on new names: 48 MiB, writable, each time")
        t.ok(not listing(store_nbd), "the store holds no volume (no volume.json, no lease) "
             f"({few(listing(store_nbd))})")
        t.ok(not listing(d.cache), f"the cache holds no directory ({few(listing(d.cache))})")
        t.ok(rss1 - rss0 <= 4096, f"RSS grew by {rss1 - rss0} KiB (at most 4 MiB)")
        t.ok("opened" not in d.log_text(), "the log shows no export opened")

        # GO creates it, with the size INFO announced.
        c = d.connect("query-7", opt_mode=True)
        c.opt_go()
        t.eq(c.get_size(), 48 * MiB, "GO on the same name: created with that size")
        c.pwrite(b"\x5a" * 4096, 0)
        c.flush()
        t.ok(listing(store_nbd) == ["query-7"],
             f"only GO created a volume ({few(listing(store_nbd))})")
        t.eq(info(d, "query-7"), (48 * MiB, False), "INFO on the open export: its size")
        c.shutdown()
        bad = info(d, "../etc")
        t.ok(isinstance(bad, nbd.Error), f"INFO on an invalid name is refused ({bad})")
        t.eq(d.stop(), 0, "drains and exits 0")

    # A volume in the store that is not open on this node: its own size.
    with nbdtest.Daemon(size="48M") as d:
        d.start()
        c = d.connect("big")
        t.eq(c.get_size(), 48 * MiB, "setup: big created with 48 MiB")
        c.shutdown()
        d.stop()
        base = d.base
        d2 = nbdtest.Daemon(base=os.path.join(base, "second"), store=d.store, size="16M")
        with d2:
            d2.start()
            t.eq(info(d2, "big"), (48 * MiB, False),
                 "INFO on a volume in the store, not open here: its own 48 MiB")
            t.eq(info(d2, "other"), (16 * MiB, False), "INFO on a new name: this node's 16 MiB")
            t.eq(listing(os.path.join(d.store, "nbd")), ["big"], "still only big in the store")
            t.eq(d2.stop(), 0, "exits 0")
    t.done()


if __name__ == "__main__":
    main()
