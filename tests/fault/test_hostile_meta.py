#!/usr/bin/python3
"""test_hostile_meta.py - crafted metadata objects in a file:// store
(issue 21 item 1): volume.json whose fields are each fine but inconsistent
with each other (a parent with an empty lineage - that one made glidefsd read
lineage[depth - 1] far out of bounds and die with SIGSEGV - a parent that is
not the last of the lineage, a lineage naming the volume itself or one
volume twice, ...), leases and snapshot objects likewise. glidefsd must
survive every one, refuse exactly that export with a log line saying what is
wrong, answer the REST calls that open it with an error (never a 2xx, never a
500 or a dropped connection), and keep serving the others: a well-behaved
client on its own export, and a control export opened before the cases,
read back exactly after each.

usage: test_hostile_meta.py GLIDEFSD
"""
import copy
import json
import os
import random
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import test_hostile as th  # noqa: E402

MiB = fl.MiB
FAILED = []


def fail(msg):
    FAILED.append(msg)
    print("FAIL - " + msg, flush=True)


def api(d, method, path, body=None):
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    try:
        st, _, out = fl.http(method, d.api_url(path), data, hdr, timeout=60)
        return st, out
    except OSError as e:  # dropped: the daemon died or closed on us
        return None, str(e).encode()


def make_store(glidefsd, base):
    """'pristine' (2 MiB, every block written, drained) with snapshot s1 and
    its clone 'kid'. Returns (store, model)."""
    store = os.path.join(base, "store")
    d = fl.Glidefsd(glidefsd, base, "maker", store=store, size="2M", api=True,
                    nbd_extra={"blocks_per_batch": 4})
    m = fl.ExportModel("pristine", 2 * MiB)
    try:
        d.start()
        h = d.connect("pristine")
        for s in range(0, m.nsect, 256):
            h.pwrite(b"".join(fl.sector_bytes(7, x, m.salt) for x in range(s, s + 256)),
                     s * fl.SECTOR)
        h.flush()
        for method, path, body, want in [
                ("POST", "/api/exports/pristine/snapshots", {"name": "s1"}, 201),
                ("POST", "/api/exports", {"name": "kid", "clone_of": "pristine",
                                          "snapshot": "s1"}, 201)]:
            st, out = api(d, method, path, body)
            if st != want:
                raise RuntimeError("%s %s: %s %s" % (method, path, st, out[:200]))
        h.shutdown()
        m.base = [7] * m.nsect
        if d.stop() != 0:
            raise RuntimeError("maker drain failed:\n" + d.log_tail())
    finally:
        d.close()
    return store, m


def cases(store):
    """[(what, source volume, mutate(dir, name), expect, log phrase)]:
    expect 'refused' or 'served'."""
    def vj_edit(fn):
        def f(d, name):
            p = os.path.join(d, "volume.json")
            with open(p) as fh:
                vj = json.load(fh)
            fn(vj, name)
            with open(p, "w") as fh:
                json.dump(vj, fh)
        return f

    def put(rel, obj):
        def f(d, name):
            with open(os.path.join(d, rel), "w") as fh:
                fh.write(obj if isinstance(obj, str) else json.dumps(obj))
        return f

    with open(os.path.join(store, "nbd", "pristine", "lease")) as fh:
        lease = json.load(fh)
    with open(os.path.join(store, "nbd", "pristine", "snap", "s1")) as fh:
        snap = json.load(fh)

    def lease_with(**kw):
        ls = copy.deepcopy(lease)
        ls.update(kw)
        return put("lease", ls)

    def snap_with(**kw):
        sn = copy.deepcopy(snap)
        sn.update(kw)
        return put("snap/s1", sn)

    def set_(**kw):
        def f(vj, name):
            vj.update(kw)
        return f

    def parent_(**kw):
        def f(vj, name):
            vj["parent"].update(kw)
        return f

    other_uuid = "0b7e3c4d-2f1a-4e6b-9c8d-7a6b5c4d3e2f"
    deep = ["gone%03d" % i for i in range(255)]
    return [
        ("control: a copy of the root", "pristine", lambda d, n: None, "served", None),
        ("control: a copy of the clone", "kid", lambda d, n: None, "served", None),
        ("volume.json: a parent naming a manifest and an empty lineage", "kid",
         vj_edit(set_(lineage=[])), "refused", "a parent but no lineage"),
        ("volume.json: a parent that is not the last of its lineage", "kid",
         vj_edit(parent_(name="someone")), "refused", "a parent other than the last"),
        ("volume.json: a lineage naming the volume itself", "kid",
         vj_edit(lambda vj, n: vj.update(lineage=[n], parent=dict(vj["parent"], name=n))),
         "refused", "naming an invalid volume name or itself"),
        ("volume.json: a lineage naming one volume twice", "kid",
         vj_edit(set_(lineage=["pristine", "pristine"])), "refused", "one volume twice"),
        ("volume.json: a lineage but no parent", "kid",
         vj_edit(lambda vj, n: vj.pop("parent")), "refused", "a lineage but no parent"),
        ("volume.json: a root with another volume's data_uuid", "pristine",
         vj_edit(set_(data_uuid=other_uuid)), "refused", "a data_uuid other than its uuid"),
        ("volume.json: a parent snapshot naming a path", "kid",
         vj_edit(parent_(snapshot="../../pristine/lease")), "refused", "a malformed parent"),
        ("volume.json: 255 ancestors that do not exist", "kid",
         vj_edit(lambda vj, n: vj.update(lineage=deep, parent=dict(vj["parent"],
                                                                   name=deep[-1]))),
         "refused", "cannot read manifest"),
        ("volume.json: deleted 'yes'", "pristine", vj_edit(set_(deleted="yes")), "refused",
         "a \"deleted\" that is not true or false"),
        ("volume.json: created_ms -1", "pristine", vj_edit(set_(created_ms=-1)), "refused",
         "a bad created_ms"),
        ("lease: epoch 2^56 (into the origin bits)", "pristine", lease_with(epoch=1 << 56),
         "refused", "/lease is malformed"),
        ("lease: fences of one epoch twice ('1', '01')", "pristine",
         lease_with(epoch=3, fences={"1": 5, "01": 9}), "refused", "/lease is malformed"),
        ("lease: node id with a newline", "pristine", lease_with(node_id="evil\nnode"),
         "refused", "/lease is malformed"),
        ("lease: heartbeat -5", "pristine", lease_with(heartbeat_ms=-5), "refused",
         "/lease is malformed"),
        ("snapshot: size 513", "pristine", snap_with(size=513), "refused", "snap/s1 is malformed"),
        ("snapshot: names another snapshot", "pristine", snap_with(name="s2"), "refused",
         "snap/s1 is malformed"),
        ("snapshot: manifest naming a path", "pristine", snap_with(manifest="../../lease"),
         "refused", "snap/s1 is malformed"),
    ]


def main():
    glidefsd = os.path.abspath(sys.argv[1])
    fl.need_libnbd()
    base = tempfile.mkdtemp(prefix="glidefs-hostile-meta-")
    t0 = time.monotonic()
    store, model = make_store(glidefsd, base)
    todo = cases(store)
    names = []
    for i, (what, src, mut, expect, phrase) in enumerate(todo):
        nm = "meta%02d" % i
        dst = os.path.join(store, "nbd", nm)
        shutil.copytree(os.path.join(store, "nbd", src), dst,
                        ignore=shutil.ignore_patterns(".tmp.*"))
        mut(dst, nm)
        names.append(nm)
    # the control export, opened before any case and read after each
    ctl = "ctl"
    shutil.copytree(os.path.join(store, "nbd", "pristine"), os.path.join(store, "nbd", ctl),
                    ignore=shutil.ignore_patterns(".tmp.*"))
    d = fl.Glidefsd(glidefsd, base, "reader", store=store, size="8M", api=True)
    d.start()
    good = th.Good(d)
    cmodel = fl.ExportModel(ctl, model.size)
    cmodel.salt, cmodel.base = model.salt, model.base
    ch = d.connect(ctl)
    want = b"".join(fl.sector_bytes(7, x, model.salt) for x in range(model.nsect))
    rows = []
    try:
        for (what, src, _, expect, phrase), nm in zip(todo, names):
            before = len(d.log_text().splitlines())
            m = fl.ExportModel(nm, model.size)
            m.salt, m.base = model.salt, model.base
            outcome, probs = th.read_case(d, nm, m)
            # the REST calls that open a volume
            rest = []
            for method, path, body in [
                    ("POST", "/api/exports/%s/drain" % nm, None),
                    ("GET", "/api/exports/%s/snapshots" % nm, None),
                    ("POST", "/api/exports", {"name": nm + "-c", "clone_of": nm,
                                              "snapshot": "s1"})]:
                st, out = api(d, method, path, body)
                rest.append(st)
                if st is None or st >= 500 and st not in (502, 503, 504):
                    fail("%s: %s %s answered %s %s" % (what, method, path, st, out[:160]))
                if expect == "refused" and st is not None and 200 <= st < 300:
                    fail("%s: %s %s succeeded on a refused volume" % (what, method, path))
            new_log = d.log_text().splitlines()[before:]
            said = [ln.split(": ", 2)[-1] for ln in new_log
                    if nm in ln and (" error" in ln or "warn" in ln)]
            rows.append((what, outcome, rest, said[0][:150] if said else ""))
            if not d.alive():
                fail("%s: glidefsd died (status %s) %s" % (what, d.proc.returncode,
                                                            (d.sanitizer_reports() or [""])[0]))
                d.close()
                d.start()
                good = th.Good(d)
                ch = d.connect(ctl)
                continue
            for p in probs:
                fail("%s: %s" % (what, p))
            if expect == "served" and not outcome.startswith("all"):
                fail("%s: want every block back, got %s" % (what, outcome))
            if expect == "refused":
                if outcome != "refused at open":
                    fail("%s: want the export refused, got %s" % (what, outcome))
                if not any(phrase in ln for ln in said):
                    fail("%s: no log line naming %s says %r: %s" % (what, nm, phrase, said))
            if not good.check("crafted metadata: " + what):
                fail("%s: the well-behaved client broke" % what)
                break
            if ch.pread(len(want), 0) != want:
                fail("%s: the control export read back other bytes" % what)
        san = d.sanitizer_reports()
        if san:
            fail("sanitizer report in %s: %s" % (d.log, san[0]))
    finally:
        for what, outcome, rest, said in rows:
            print("#   %-62s -> %s, REST %s%s" % (what, outcome, rest,
                                                    ("  [log: %s]" % said) if said else ""))
        d.close()
    FAILED.extend(th.FAILED)
    print("SUMMARY " + json.dumps({"test": "hostile_meta", "cases": len(rows),
                                   "seconds": round(time.monotonic() - t0, 1),
                                   "failures": len(FAILED)}), flush=True)
    if FAILED:
        print("--- glidefsd log (%s) ---\n%s" % (d.log, d.log_tail(40)))
        print("(kept %s)" % base)
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    random.seed(1)
    sys.exit(main())
