"""cluster.py - several glidefsd on one store, for the one-writer tests.

A thin layer over tests/fault/faultlib.py's Glidefsd (which writes the
config, starts, stops and scans the log): every node of a Cluster shares one
store (file:// directory, or one s3:// prefix under tests/s3/s3env.py), has
its REST API on a free loopback port and its own cache dir (or a given one),
and is killed when the cluster ends. No node_id unless asked: the default
configuration is what the tests are about.
"""
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fault"))
sys.path.insert(0, os.path.join(HERE, "..", "nbd"))
import faultlib as fl  # noqa: E402
from nbdtest import Checker  # noqa: E402,F401  (re-exported for the tests)

MiB = 1 << 20


def pattern(seed, n):
    import random
    return random.Random(seed).randbytes(n)


def drop(h):
    """Disconnect a client cleanly (NBD_CMD_DISC)."""
    try:
        h.shutdown()
    except Exception:  # noqa: BLE001 - the daemon may be gone or fenced
        pass


def write_fails(h, data, off):
    """One write and flush through client h: True once the daemon refuses
    it (EPERM: read-only or fenced), False while it accepts."""
    import errno
    import nbd
    try:
        h.pwrite(data, off)
        h.flush()
        return False
    except nbd.Error as e:
        if fl.nbd_errno(e) != errno.EPERM:
            raise
        return True


class Cluster:
    def __init__(self, exe, tag, size="16M"):
        self.exe = exe
        self.root = tempfile.mkdtemp(prefix="glidefs-%s-" % tag)
        self.store = os.path.join(self.root, "store")
        self.prefix = "%s-%d" % (tag, os.getpid())
        self.size = size
        self.nodes = []

    def node(self, name, lease_ms=3000, node_id=None, cache=None, copy_of=None,
             storage_extra=None, start=True):
        """A glidefsd named name. copy_of: a cache dir to copy (as it is on
        disk now, the daemon using it still running) into this node's."""
        d = fl.Glidefsd(self.exe, self.root, name=name, cache=cache, store=self.store,
                        prefix=self.prefix, size=self.size, disk_size="64M", api=True,
                        node_id=node_id, storage_extra=storage_extra, log_level="debug",
                        shutdown_timeout_s=60)
        with open(d.cfg) as f:
            text = f.read()
        text = text.replace("  shutdown_timeout_s:",
                            "  lease_timeout_ms: %d\n  shutdown_timeout_s:" % lease_ms)
        with open(d.cfg, "w") as f:
            f.write(text)
        if copy_of:
            shutil.rmtree(d.cache)
            shutil.copytree(copy_of, d.cache, symlinks=True)
        self.nodes.append(d)
        if start:
            self.start(d)
        return d

    def start(self, d):
        d.start()
        fl.wait_for(lambda: self.api(d, "GET", "/healthz", timeout=2)[0] == 200, 20,
                    "%s's API" % d.name)

    @staticmethod
    def api(d, method, path, timeout=60):
        try:
            st, _, body = fl.http(method, d.api_url(path), timeout=timeout)
        except OSError:
            return 0, {}
        try:
            return st, json.loads(body or b"{}")
        except ValueError:
            return st, {"text": body.decode(errors="replace")}

    def lease(self, name):
        """The lease object of export name as the file:// store holds it."""
        with open(os.path.join(self.store, "nbd", name, "lease")) as f:
            return json.load(f)

    def close(self, keep=False):
        import signal
        for d in self.nodes:
            if d.proc and d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)  # a paused one dies too
            d.close()
        san = [(d.name, r) for d in self.nodes for r in d.sanitizer_reports()]
        if keep or os.environ.get("GLIDEFS_TEST_KEEP"):
            print("kept", self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return san
