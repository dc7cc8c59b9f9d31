#!/usr/bin/python3
"""mkguest.py - build the test guest once: a Debian cloud kernel and an
initramfs holding busybox-static, the virtio block modules and init.sh.

  mkguest.py CACHE_DIR        prints "KERNEL INITRD" (paths) on stdout

Everything lands in CACHE_DIR (the meson build dir's tests/guest/cache):

  1. The kernel: `apt-cache depends linux-image-cloud-amd64` names the
     versioned package (linux-image-6.1.0-NN-cloud-amd64); `apt-get download`
     fetches it (with `apt-get update` first if the lists know nothing of it
     and we are root), `dpkg-deb -x` unpacks it into a temporary directory,
     and only vmlinuz and the modules the guest needs are kept. It is never
     installed on the host. GLIDEFS_GUEST_KERNEL_DEB=/path/to/linux-image.deb
     skips the download.
  2. The modules: virtio_blk and virtio_pci with everything they depend on
     (read from each module's .modinfo section, so no kmod is needed on the
     host), in load order: virtio_ring, virtio, virtio_pci_legacy_dev,
     virtio_pci_modern_dev, virtio_pci, virtio_blk on Debian 12. .ko.xz/.zst
     files are decompressed here.
  3. The initramfs: a gzip'ed newc cpio written by this script (so device
     nodes need no root): /bin/busybox (static), /init (init.sh), /dev/console,
     /etc/modules (the load order), /lib/modules/*.ko.

A lock (fcntl on CACHE_DIR/.lock) serialises parallel test runs; a stamp
(kernel version, busybox and init.sh hashes) decides whether to rebuild.
Exit status: 0 built (or already there), 77 (skip) when busybox-static is
missing, 1 on any other failure (one line on stderr says what).
"""
import fcntl
import glob
import gzip
import hashlib
import io
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
META = "linux-image-cloud-amd64"
WANT_MODULES = ("virtio_pci", "virtio_blk")
SKIP = 77
ENV = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", ""),
           LC_ALL="C")


class Skip(Exception):
    pass


def sh(argv, **kw):
    return subprocess.run(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)


def elf_sections(data):
    """{name: bytes} of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise RuntimeError("not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    hdrs = []
    for i in range(shnum):
        name, _typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data,
                                                                  shoff + i * shentsize)
        hdrs.append((name, off, size))
    stroff, strsize = hdrs[shstrndx][1], hdrs[shstrndx][2]
    strtab = data[stroff:stroff + strsize]
    out = {}
    for name, off, size in hdrs:
        n = strtab[name:strtab.index(b"\0", name)].decode()
        out[n] = data[off:off + size]
    return out


def elf_is_static(path):
    with open(path, "rb") as f:
        data = f.read(4096)
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        typ, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if typ == 3:  # PT_INTERP: dynamically linked
            return False
    return True


def module_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        r = subprocess.run(["zstd", "-dc", path], stdout=subprocess.PIPE, check=True)
        return r.stdout
    if path.endswith(".gz"):
        return gzip.decompress(data)
    return data


def module_depends(data):
    info = elf_sections(data).get(".modinfo", b"")
    for field in info.split(b"\0"):
        if field.startswith(b"depends="):
            return [d for d in field[8:].decode().split(",") if d]
    return []


def find_kernel_deb(tmp):
    deb = os.environ.get("GLIDEFS_GUEST_KERNEL_DEB")
    if deb:
        return os.path.abspath(deb)

    def versioned():
        r = sh(["apt-cache", "depends", META])
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split(":", 1)[1].strip()
        return None
    pkg = versioned()
    if not pkg and os.geteuid() == 0:
        print("mkguest: apt lists do not know %s: apt-get update" % META, file=sys.stderr)
        sh(["apt-get", "update", "-qq"])
        pkg = versioned()
    if not pkg:
        raise RuntimeError("apt-cache depends %s names no kernel package (apt-get update?)"
                           % META)
    r = sh(["apt-get", "download", pkg], cwd=tmp)
    debs = glob.glob(os.path.join(tmp, pkg + "_*.deb"))
    if r.returncode != 0 or not debs:
        raise RuntimeError("apt-get download %s failed: %s" % (pkg, r.stderr.strip()[-500:]))
    return debs[0]


def deb_version(deb):
    r = sh(["dpkg-deb", "-f", deb, "Package", "Version"])
    if r.returncode != 0:
        raise RuntimeError("dpkg-deb -f %s: %s" % (deb, r.stderr.strip()))
    return " ".join(r.stdout.split())


class Cpio:
    """A newc cpio archive, in memory."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _add(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
            len(name_b), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + name_b)
        self.buf.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._add(name, 0o040755, nlink=2)

    def file(self, name, data, perm=0o644):
        self._add(name, 0o100000 | perm, data)

    def symlink(self, name, target):
        self._add(name, 0o120777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self._add(name, 0o020000 | perm, rdev=(major, minor))

    def finish(self):
        self._add("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def build(cache):
    busybox = shutil.which("busybox", path="/bin:/usr/bin:/sbin:/usr/sbin")
    if not busybox or not elf_is_static(busybox):
        raise Skip("busybox-static not installed (apt-get install busybox-static)")
    with open(busybox, "rb") as f:
        bb = f.read()
    with open(os.path.join(HERE, "init.sh"), "rb") as f:
        init = f.read()
    kernel = os.path.join(cache, "vmlinuz")
    initrd = os.path.join(cache, "initrd.img")
    stamp_path = os.path.join(cache, "stamp")
    kver_path = os.path.join(cache, "kernel-version")
    srcs = hashlib.sha256(bb + init + open(__file__, "rb").read()).hexdigest()

    # The kernel and modules are kept once fetched (a new Debian kernel
    # version is picked up only after the cache is removed: tests must not
    # depend on the network once the cache is there).
    moddir = os.path.join(cache, "modules")
    if not (os.path.exists(kernel) and os.path.exists(kver_path)
            and os.path.exists(os.path.join(moddir, "order"))):
        tmp = tempfile.mkdtemp(prefix="mkguest-", dir=cache)
        try:
            deb = find_kernel_deb(tmp)
            version = deb_version(deb)
            root = os.path.join(tmp, "root")
            r = sh(["dpkg-deb", "-x", deb, root])
            if r.returncode != 0:
                raise RuntimeError("dpkg-deb -x %s: %s" % (deb, r.stderr.strip()))
            vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
            if not vmlinuz:
                raise RuntimeError("%s holds no /boot/vmlinuz-*" % deb)
            mods = {}
            for p in glob.glob(os.path.join(root, "lib", "modules", "*", "kernel", "**", "*.ko*"),
                               recursive=True) + glob.glob(os.path.join(
                                   root, "usr", "lib", "modules", "*", "kernel", "**", "*.ko*"),
                                   recursive=True):
                name = os.path.basename(p).split(".ko")[0].replace("-", "_")
                mods[name] = p
            order = []
            seen = set()

            def visit(name, depth=0):
                name = name.replace("-", "_")
                if name in seen:
                    return
                if depth > 20 or name not in mods:
                    raise RuntimeError("module %s not found in %s" % (name, deb))
                seen.add(name)
                data = module_bytes(mods[name])
                for d in module_depends(data):
                    visit(d, depth + 1)
                order.append((name, data))
            for m in WANT_MODULES:
                visit(m)
            shutil.rmtree(moddir, ignore_errors=True)
            os.makedirs(moddir)
            for name, data in order:
                with open(os.path.join(moddir, name + ".ko"), "wb") as f:
                    f.write(data)
            with open(os.path.join(moddir, "order"), "w") as f:
                f.write("\n".join(n for n, _ in order) + "\n")
            shutil.copyfile(vmlinuz[0], kernel + ".tmp")
            os.rename(kernel + ".tmp", kernel)
            with open(kver_path, "w") as f:
                f.write(version + "\n")
            print("mkguest: kernel %s, modules %s" % (version, " ".join(n for n, _ in order)),
                  file=sys.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    with open(kver_path) as f:
        version = f.read().strip()
    stamp = "%s %s\n" % (version, srcs)
    if os.path.exists(initrd) and os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return kernel, initrd

    with open(os.path.join(moddir, "order")) as f:
        order = f.read().split()
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "mnt", "tmp", "etc", "lib", "lib/modules",
              "usr", "usr/bin", "usr/sbin"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", bb, 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", init, 0o755)
    c.file("etc/modules", ("\n".join(order) + "\n").encode())
    for name in order:
        with open(os.path.join(moddir, name + ".ko"), "rb") as f:
            c.file("lib/modules/%s.ko" % name, f.read())
    data = gzip.compress(c.finish(), compresslevel=6, mtime=0)
    with open(initrd + ".tmp", "wb") as f:
        f.write(data)
    os.rename(initrd + ".tmp", initrd)
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print("mkguest: initramfs %s (%d KiB)" % (initrd, len(data) // 1024), file=sys.stderr)
    return kernel, initrd


def ensure(cache):
    """Build (once, under a lock) and return (kernel, initrd)."""
    cache = os.path.abspath(cache)
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build(cache)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        kernel, initrd = ensure(sys.argv[1])
    except Skip as e:
        print("SKIP: %s" % e, file=sys.stderr)
        return SKIP
    except Exception as e:
        print("mkguest: FAIL: %s" % e, file=sys.stderr)
        return 1
    print(kernel, initrd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
