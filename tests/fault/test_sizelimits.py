#!/usr/bin/python3
"""test_sizelimits.py - volume sizes the daemon cannot hold must be refused
with a clear error before anything is written or allocated (promise 7).

Found by test_hostile.py's REST and store fuzz: the library sizes the block
map's chunk table from the volume size (8 bytes per 512 MiB of volume), with
no upper bound on the size - not when a volume is created, not on resize,
not when volume.json is read back from the store. So

  1. POST /api/exports {"size_bytes": 2^62} writes volume.json to the store,
     then fails to open it: 500 "out of memory", and a volume that can never
     be opened stays behind;
  2. PUT /api/exports/NAME {"size_bytes": 2^62}: 500 "out of memory";
  3. a volume.json whose size is 2^62 (corrupt or hostile store object) is
     believed: "cannot open volume: out of memory";
and in each case a build with AddressSanitizer (or a host with
vm.overcommit_memory=1) aborts or runs out of memory instead: the daemon
dies and takes every other export down with it.

Expected: 4xx / "volume.json has a bad size", nothing written, the daemon
alive. Also printed (not checked): the daemon's RSS with a 1 PiB export open.

usage: test_sizelimits.py GLIDEFSD
"""
import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402

HUGE = 1 << 62


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    fl.need_libnbd()
    import nbd
    glidefsd = os.path.abspath(sys.argv[1])
    base = tempfile.mkdtemp(prefix="glidefs-sizelimits-")
    failed = []

    def check(cond, what):
        print(("ok - " if cond else "FAIL - ") + what, flush=True)
        if not cond:
            failed.append(what)

    d = fl.Glidefsd(glidefsd, base, "node1", size="16M", api=True)
    try:
        d.start()
        if not fl.api_available(d):
            print("SKIP: glidefsd has no REST API", file=sys.stderr)
            return fl.SKIP

        def restart_if_dead(what, answered=True):
            if not answered:  # a sanitizer report takes a moment to write
                try:
                    d.proc.wait(10)
                except Exception:  # noqa: BLE001
                    pass
            if not d.alive():
                check(False, "glidefsd died on %s: %s" % (what, (d.sanitizer_reports() or
                                                                 ["status %s" % d.proc.returncode])[0]))
                d.close()
                shutil.move(d.log, d.log + ".died-%d" % len(failed))
                d.start()
                fl.wait_for(lambda: fl.api_available(d), 30, "the REST API")

        # 1. create
        try:
            st, _, body = fl.http("POST", d.api_url("/api/exports"),
                                  body=json.dumps({"name": "huge", "size_bytes": HUGE}).encode())
        except OSError as e:
            st, body = None, str(e).encode()
        left = os.path.exists(os.path.join(d.store, "nbd", "huge", "volume.json"))
        check(st is not None and 400 <= st < 500 and not left,
              "POST /api/exports of 2^62 bytes is refused (4xx) before the store is touched "
              "(got %s %s%s)" % (st, body[:120], ", volume.json left in the store" if left
                                 else ""))
        restart_if_dead("POST /api/exports of 2^62 bytes", st is not None)

        # 2. resize
        h = d.connect("small")
        try:
            st, _, body = fl.http("PUT", d.api_url("/api/exports/small"),
                                  body=json.dumps({"size_bytes": HUGE}).encode())
        except OSError as e:
            st, body = None, str(e).encode()
        check(st is not None and 400 <= st < 500,
              "PUT /api/exports/small to 2^62 bytes is refused (4xx) (got %s %s)"
              % (st, body[:120]))
        restart_if_dead("PUT /api/exports/small to 2^62 bytes", st is not None)
        try:
            h.shutdown()
        except nbd.Error:
            pass

        # 3. a volume.json of 2^62 bytes in the store
        vol = os.path.join(d.store, "nbd", "small")
        crafted = os.path.join(d.store, "nbd", "crafted")
        fl.wait_for(lambda: os.path.exists(os.path.join(vol, "volume.json")), 10, "volume.json")
        # not the file store's uploads in flight (".tmp.*", renamed over an object)
        shutil.copytree(vol, crafted, ignore=shutil.ignore_patterns(".tmp.*"))
        with open(os.path.join(crafted, "volume.json")) as f:
            vj = json.load(f)
        vj["size"] = HUGE
        with open(os.path.join(crafted, "volume.json"), "w") as f:
            json.dump(vj, f)
        before = len(d.log_text().splitlines())
        try:
            hc = d.connect("crafted")
            hc.shutdown()
            opened = True
        except nbd.Error:
            opened = False
        said = [ln for ln in d.log_text().splitlines()[before:] if "crafted" in ln]
        oom = any("out of memory" in ln for ln in said)
        nfail = len(failed)
        if not opened:
            restart_if_dead("opening a volume whose volume.json says 2^62 bytes", False)
        check(not opened and not oom and len(failed) == nfail,
              "a volume.json of 2^62 bytes is refused as a bad size, not believed (log: %s)"
              % (said[-1].split(": ", 2)[-1] if said else "nothing"))

        # for the record: what a 1 PiB export costs in memory
        rss0 = d.rss_kib()
        st, _, body = fl.http("POST", d.api_url("/api/exports"),
                              body=json.dumps({"name": "pib", "size_bytes": 1 << 50}).encode())
        if st in (200, 201):
            print("# RSS %d MiB -> %d MiB with a 1 PiB export open" % (
                rss0 // 1024, d.rss_kib() // 1024))
        restart_if_dead("creating a 1 PiB export")
        san = d.sanitizer_reports()
        if san:
            check(False, "sanitizer report: %s" % san[0])
        d.stop()
    finally:
        d.close()
    if failed:
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
