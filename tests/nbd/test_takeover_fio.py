#!/usr/bin/python3
"""test_takeover_fio.py - issue 27's fio test: fio (its nbd engine, one
connection per export) writes four exports at queue depth 16 with crc32c
verification while glidefsd is replaced TAKEOVERS (20) times with
`glidefsd --takeover`; nothing may fail and nothing may reconnect.

fio reaches two exports over the unix socket and two over TCP (loopback).
Per export, fio does random writes of 4-32 KiB in the lower half (16 MiB),
a FLUSH after every 8th write (fsync=8), reads back and checks every 32
writes while more are in flight (verify_backlog), and after each pass over
its region verifies what is left (fio's verify phase), LOOPS (20) passes in
all at up to 4000 requests/s per direction: fio cannot be ended early
without skipping its verify phase, so it is sized to outlast the takeovers
(about 3x here; a fast machine meets the rate cap, a slow one slows both).
fio's nbd engine never sets FUA and cannot send fdatasync (only FLUSH), so
a python3-libnbd client per export writes the upper half with FUA and reads
each block back, on its own connection. The daemon is replaced while all
eight connections carry requests; the test waits for conditions only: the
successor logging every connection as taken over, then the old process's
exit, then every FUA writer's next requests.

Checks: fio exits 0 with no job error, every byte it wrote was read back
and verified (read bytes = written bytes: verify_backlog plus the verify
phases) and it flushed; no FUA write or read-back failed or differed; every
successor adopted exactly the eight connection ids the first process
negotiated, no client connected again, and every process in the chain
served requests on every fio connection (its "handed to the new process
after N requests" line). Exits 77 without fio's nbd engine or libnbd.

usage: test_takeover_fio.py GLIDEFSD   (env: TAKEOVERS, LOOPS)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdtest  # noqa: E402

nbdtest.need_libnbd()
import nbd  # noqa: E402

FIO = shutil.which("fio", path="/usr/bin:/bin:" + os.environ.get("PATH", ""))
if not FIO:
    print("SKIP: fio not installed", file=sys.stderr)
    sys.exit(nbdtest.SKIP)
eng = subprocess.run([FIO, "--enghelp=nbd"], capture_output=True, text=True)
if eng.returncode != 0 or "uri" not in eng.stdout:
    print("SKIP: this fio has no nbd engine (fio --enghelp=nbd)", file=sys.stderr)
    sys.exit(nbdtest.SKIP)

t = nbdtest.Checker()
KiB = 1024
MiB = 1024 * KiB
TAKEOVERS = int(os.environ.get("TAKEOVERS", "20"))
LOOPS = int(os.environ.get("LOOPS", "20"))   # fio passes: must outlast the takeovers
EXPORTS = ["vm0", "vm1", "vm2", "vm3"]
SIZE = 32 * MiB
FIO_REGION = 16 * MiB                      # fio: [0, 16 MiB); FUA writers: the rest
FUA_BLOCK = 64 * KiB


def pattern(seed):
    return bytes(((i * 131) ^ seed) & 0xFF for i in range(256)) * (FUA_BLOCK // 256)


class FuaWriters:
    """One connection per export: FUA write, read back, compare; forever."""

    def __init__(self, d):
        self.handles = []
        for name in EXPORTS:
            h = d.connect(name)
            self.handles.append((name, h))
        self.ops = [0] * len(EXPORTS)
        self.errors = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(len(EXPORTS))]

    def run(self, i):
        name, h = self.handles[i]
        n = 0
        while not self.stop.is_set():
            off = FIO_REGION + (n % ((SIZE - FIO_REGION) // FUA_BLOCK)) * FUA_BLOCK
            data = pattern((n * 7 + i) & 0xFF)
            try:
                h.pwrite(data, off, nbd.CMD_FLAG_FUA)
                got = h.pread(FUA_BLOCK, off)
            except nbd.Error as e:
                self.errors.append(f"{name}: FUA write/read at {off}: {e}")
                return
            if got != data:
                self.errors.append(f"{name}: the FUA write at {off} read back different")
                return
            n += 1
            self.ops[i] = n

    def progressed(self, since, k):
        return all(o >= s + k for o, s in zip(self.ops, since)) or bool(self.errors)


def fio_job(d, path, port):
    with open(path, "w") as f:
        f.write(f"""[global]
ioengine=nbd
rw=randwrite
bsrange=4k-32k
iodepth=16
rate_iops=4000
size={FIO_REGION}
loops={LOOPS}
fsync=8
verify=crc32c
verify_backlog=32
verify_fatal=1
verify_state_save=0
""")
        for i, name in enumerate(EXPORTS):  # two over the unix socket, two over TCP
            uri = (f"nbd+unix:///{name}?socket={d.sock}" if i < 2
                   else f"nbd://127.0.0.1:{port}/{name}")
            f.write(f"[{name}]\nuri={uri}\n")


def log_lines(d, pid, what):
    """The ids in pid's log lines 'connection N: <what>'."""
    return [int(x) for x in re.findall(
        r"glidefsd\[%d\]: \w+: connection (\d+): %s" % (pid, what), d.log_text())]


def successor(d):
    return subprocess.Popen(
        [nbdtest.glidefsd_path(), "-c", d.cfg, "--takeover", "--log-level", "debug"],
        stdin=subprocess.DEVNULL, stdout=d.logf, stderr=d.logf)


def main():
    base = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"glidefsd-takeover-fio-{os.getpid()}")
    t0 = time.monotonic()
    port = nbdtest.free_tcp_port()
    d = nbdtest.Daemon(base=base, size="32M", tcp=f'"127.0.0.1:{port}"')
    with d:
        d.start()
        w = FuaWriters(d)
        t.ok(all(h.can_fua() for _, h in w.handles), "every export offers FUA")
        job = os.path.join(base, "takeover.fio")
        fio_job(d, job, port)
        fio_out = open(os.path.join(base, "fio.out"), "w+")
        fio = subprocess.Popen([FIO, "--output-format=json", job], stdout=fio_out,
                               stderr=subprocess.STDOUT, cwd=base)
        try:
            pid0 = d.proc.pid
            # fio opens one connection per job to learn the size (and closes
            # it), then the one it works on: eight negotiated, four left.
            live = lambda: [c for c in log_lines(d, pid0, r"export vm\d \(")  # noqa: E731
                            if c not in log_lines(d, pid0, "closed after")]
            nbdtest.wait_for(lambda: len(live()) >= 8 or fio.poll() is not None, 30,
                             "fio's four connections and the four FUA writers'")
            ids = sorted(live())
            t.eq(len(ids), 8, f"eight connections in transmission: {ids}")
            for th in w.threads:
                th.start()
            nbdtest.wait_for(lambda: w.progressed([0] * 4, 5), 30, "the FUA writers to start")
            pids = [pid0]
            stalls = []
            for n in range(TAKEOVERS):
                if fio.poll() is not None:
                    break
                old = d.proc
                since = list(w.ops)
                t1 = time.monotonic()
                new = successor(d)
                try:
                    nbdtest.wait_for(lambda: len(log_lines(d, new.pid, r"export vm\d \([^)]*\), "
                                                           "taken over")) >= len(ids)
                                     or new.poll() is not None or w.errors
                                     or fio.poll() is not None, 30,
                                     f"takeover {n + 1}: the successor serving every connection")
                    rc = old.wait(60)
                except (TimeoutError, subprocess.TimeoutExpired) as e:
                    t.ok(False, f"takeover {n + 1}: {e}")
                    new.kill()
                    new.wait()
                    break
                if fio.poll() is not None and new.poll() is None and rc == 0:
                    d.proc = new  # fio ended meanwhile: a count below says so
                    break
                if new.poll() is not None or rc != 0:
                    t.ok(False, f"takeover {n + 1}: old exited {rc}, new {new.poll()}")
                    break
                d.proc = new
                pids.append(new.pid)
                stalls.append(time.monotonic() - t1)
                try:
                    nbdtest.wait_for(lambda: w.progressed(since, 2), 30,
                                     f"FUA writes after takeover {n + 1}")
                except TimeoutError as e:
                    t.ok(False, str(e))
                    break
            done_early = fio.poll() is not None
            print(f"# takeovers done at {time.monotonic() - t0:.1f} s")
            t.eq(len(pids) - 1, TAKEOVERS, f"{TAKEOVERS} takeovers while fio ran "
                 f"({'fio had finished: raise LOOPS' if done_early else 'fio still running'}; "
                 f"each {min(stalls or [0]):.2f}-{max(stalls or [0]):.2f} s to the old one's exit)")
            try:
                rc = fio.wait(180)
            except subprocess.TimeoutExpired:
                fio.kill()
                rc = fio.wait()
                t.ok(False, "fio finished within 180 s of the last takeover (killed)")
        finally:
            if fio.poll() is None:  # (only on an exception: waited for above)
                fio.kill()
                fio.wait()
        w.stop.set()
        for th in w.threads:
            th.join(30)
        fio_out.seek(0)
        out = fio_out.read()
        t.eq(rc, 0, "fio exits 0")
        try:
            jobs = json.loads(out[out.index("{"):])["jobs"]
        except (ValueError, KeyError) as e:
            jobs = []
            t.ok(False, f"fio's JSON output: {e}\n{out[-3000:]}")
        for j in jobs:
            wr, rd = j["write"]["io_bytes"], j["read"]["io_bytes"]
            t.ok(j["error"] == 0 and wr >= LOOPS * FIO_REGION and rd == wr
                 and j["sync"]["total_ios"] > 0,
                 f"fio {j['jobname']}: error {j['error']}, wrote {wr >> 20} MiB, read back and "
                 f"verified {rd >> 20} MiB, {j['sync']['total_ios']} flushes")
        t.eq(len(jobs), len(EXPORTS), "a result for every fio job")
        t.eq(w.errors, [], "no FUA write or read-back failed")
        t.ok(all(o > 0 for o in w.ops), f"FUA write+read cycles verified: {w.ops}")
        # Every successor adopted the original ids, and nobody reconnected.
        for i, p in enumerate(pids[1:]):
            got = sorted(log_lines(d, p, r"export vm\d \([^)]*\), taken over"))
            if got != ids:
                t.eq(got, ids, f"process {i + 2} (pid {p}) serves the original connections")
                break
        else:
            t.ok(len(pids) > 1, f"all {len(pids) - 1} successors adopted connections {ids}")
        fresh = [c for p in pids[1:] for c in log_lines(d, p, r"export vm\d \((?![^)]*\), taken)")]
        t.eq(fresh, [], "no client connected again (no successor negotiated a connection)")
        served = {}
        for p in pids[:-1]:
            for c, nreq in re.findall(r"glidefsd\[%d\]: \w+: connection (\d+): handed to the "
                                      r"new process after (\d+) requests" % p, d.log_text()):
                served.setdefault(p, {})[int(c)] = int(nreq)
        idle = [(p, c) for p in pids[:-1] for c in ids if served.get(p, {}).get(c, 0) == 0]
        t.ok(not idle and len(served) == len(pids) - 1,
             f"every process handed over every connection after serving requests on it"
             f"{': idle ' + str(idle[:4]) if idle else ''}")
        for _, h in w.handles:
            try:
                h.shutdown()
            except nbd.Error:
                pass  # (a failed one is counted above)
        t.eq(d.stop(), 0, "the last process stops on SIGTERM with status 0")
    print(f"# {time.monotonic() - t0:.1f} s")
    if not t.failed:
        shutil.rmtree(base, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
