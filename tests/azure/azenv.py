#!/usr/bin/python3
"""azenv.py — run one test against Azurite (Microsoft's Azure Storage
emulator) behind the fault proxy azproxy.py.

  azenv.py --cache DIR [--require] [--check] [--timeout S] -- TEST-PROGRAM [ARGS...]

1. Finds node and npm; without them exits 77 (meson's "skipped"), unless
   --require (meson option azure_tests=enabled), which makes that a failure.
2. Installs azurite (pinned version) with npm into DIR/azurite once (a lock
   serialises parallel test runs; later runs reuse it).
3. Starts Azurite's Blob service alone on 127.0.0.1, a free port (it binds
   port 0 and says which), in-memory (--inMemoryPersistence, a bounded
   extent store), in a temporary directory, with its telemetry off, and
   creates the test container with a Shared Key request signed by
   azsign.py (Python, independent of the C signer).
4. Starts azproxy.py in front of it on another free port.
5. Runs the test program with AZURE_TEST_ENDPOINT (the proxy, path-style:
   http://127.0.0.1:PORT/devstoreaccount1), AZURE_TEST_DIRECT (Azurite
   itself), AZURE_TEST_ACCOUNT, AZURE_TEST_KEY, AZURE_TEST_CONTAINER,
   AZURE_TEST_SAS (a read/add/create/write/delete/list SAS for the
   container), AZURE_TEST_SAS_RO (read/list), AZURE_TEST_ACCOUNT_SAS (an
   account SAS), AZURE_PROXY_CONTROL, AZURE_PROXY_LOG and
   AZURE_TEST_CHECK_FILE; AZURE_STORAGE_* from the caller's environment
   are removed. With --check, then reads back with azsign.py's client the
   blobs the test listed in AZURE_TEST_CHECK_FILE (name TAB size TAB
   sha256) and compares.
6. Always stops the proxy and Azurite (by PID, process group) and removes
   the temporary directory.

Python 3 standard library only.
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import azsign  # noqa: E402

AZURITE_VERSION = "3.35.0"  # the last release that runs on Node 20 (3.36 wants Node 21+)
CONTAINER = "glidefs-test"
SKIP = 77
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "all_proxy")
AZURE_VARS = ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
              "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_AUTH_MODE")


def log(msg):
    print("azenv: " + msg, file=sys.stderr, flush=True)


def clean_env(**extra):
    env = dict(os.environ, **extra)
    for k in PROXY_VARS + AZURE_VARS:
        env.pop(k, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


def http_ok(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        return opener.open(url, timeout=2).status == 200
    except OSError:
        return False


def install_azurite(cache):
    """npm install azurite@AZURITE_VERSION into cache/azurite, once."""
    prefix = os.path.join(cache, "azurite")
    os.makedirs(prefix, exist_ok=True)
    pkg = os.path.join(prefix, "node_modules", "azurite", "package.json")
    main_js = os.path.join(prefix, "node_modules", "azurite", "dist", "src", "blob", "main.js")
    with open(os.path.join(prefix, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        try:
            with open(pkg) as f:
                if json.load(f).get("version") == AZURITE_VERSION and os.path.exists(main_js):
                    return main_js
        except (OSError, ValueError):
            pass
        log("installing azurite@%s into %s" % (AZURITE_VERSION, prefix))
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                            "--prefix", prefix, "azurite@" + AZURITE_VERSION],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600, env=dict(os.environ, npm_config_update_notifier="false"))
        if r.returncode != 0 or not os.path.exists(main_js):
            raise RuntimeError("npm install azurite@%s failed:\n%s" % (AZURITE_VERSION,
                                                                      r.stdout[-2000:]))
    return main_js


class Proc:
    """A child process in its own process group, always stopped."""

    def __init__(self, argv, env=None, stdout=None, cwd=None):
        self.p = subprocess.Popen(argv, env=env, stdout=stdout or subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()


def check_blobs(check_file, direct):
    """Read back, with azsign.py's client, the blobs listed in check_file."""
    try:
        with open(check_file, encoding="utf-8") as f:
            want = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        log("FAIL: the test wrote no %s" % check_file)
        return 1
    if not want:
        log("FAIL: empty check file")
        return 1
    client = azsign.Client(direct)
    prefix = os.path.commonprefix([w[0] for w in want])
    prefix = prefix[: prefix.rfind("/") + 1]
    listed = client.list_blobs(CONTAINER, prefix)
    bad = 0
    for name, size, sha in want:
        if listed.get(name) != int(size):
            log("FAIL: List Blobs shows %r with size %r, want %s" % (name, listed.get(name), size))
            bad += 1
            continue
        got = hashlib.sha256(client.get_blob(CONTAINER, name)).hexdigest()
        if got != sha:
            log("FAIL: Get Blob %r: sha256 %s, want %s" % (name, got, sha))
            bad += 1
    if not bad:
        print("azsign check: %d blob(s) listed and read back with matching size and sha256"
              % len(want), flush=True)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True, help="where azurite is installed (build dir)")
    ap.add_argument("--require", action="store_true", help="fail instead of skip without node")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no test program")

    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        msg = "node/npm not found: cannot run Azurite"
        log(("FAIL: " if a.require else "SKIP: ") + msg)
        return 1 if a.require else SKIP
    try:
        main_js = install_azurite(os.path.abspath(a.cache))
    except Exception as e:  # noqa: BLE001 - npm's many ways to fail
        log(("FAIL: " if a.require else "SKIP: ") + str(e))
        return 1 if a.require else SKIP

    tmp = tempfile.mkdtemp(prefix="glidefs-azure-")
    azurite = proxy = None
    try:
        work = os.path.join(tmp, "azurite")
        os.makedirs(work)
        out_path = os.path.join(tmp, "azurite.out")
        with open(out_path, "w") as out:
            azurite = Proc([node, main_js, "--blobHost", "127.0.0.1", "--blobPort", "0",
                            "--inMemoryPersistence", "--extentMemoryLimit", "512",
                            "--disableTelemetry", "--silent"],
                           env=clean_env(), stdout=out, cwd=work)

        def azurite_port():
            if azurite.p.poll() is not None:
                raise RuntimeError("Azurite exited: %s" % open(out_path).read()[-2000:])
            for line in open(out_path):
                if "successfully listens on" in line:
                    return int(line.strip().rsplit(":", 1)[1])
            return None
        az_port = wait_for(azurite_port, 60, "Azurite to listen")
        direct = "http://127.0.0.1:%d/%s" % (az_port, azsign.DEV_ACCOUNT)
        azsign.Client(direct).create_container(CONTAINER)

        port_file = os.path.join(tmp, "proxy.port")
        proxy_log = os.path.join(tmp, "proxy.log")
        proxy = Proc([sys.executable, os.path.join(HERE, "azproxy.py"), "--listen",
                      "127.0.0.1:0", "--upstream", "127.0.0.1:%d" % az_port,
                      "--port-file", port_file, "--log", proxy_log])
        pport = int(wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(),
                             20, "the proxy's port"))
        control = "http://127.0.0.1:%d" % pport
        wait_for(lambda: http_ok(control + "/__proxy__/health"), 20, "the proxy to answer")
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
        check_file = os.path.join(tmp, "check.tsv")
        tenv = clean_env(
            AZURE_TEST_ENDPOINT="%s/%s" % (control, azsign.DEV_ACCOUNT),
            AZURE_TEST_DIRECT=direct, AZURE_TEST_ACCOUNT=azsign.DEV_ACCOUNT,
            AZURE_TEST_KEY=azsign.DEV_KEY, AZURE_TEST_CONTAINER=CONTAINER,
            AZURE_TEST_SAS=azsign.container_sas(azsign.DEV_KEY, azsign.DEV_ACCOUNT, CONTAINER,
                                                "racwdl", expiry),
            AZURE_TEST_SAS_RO=azsign.container_sas(azsign.DEV_KEY, azsign.DEV_ACCOUNT,
                                                   CONTAINER, "rl", expiry),
            AZURE_TEST_ACCOUNT_SAS=azsign.account_sas(azsign.DEV_KEY, azsign.DEV_ACCOUNT,
                                                      "rwdlac", expiry),
            AZURE_PROXY_CONTROL=control, AZURE_PROXY_LOG=proxy_log,
            AZURE_TEST_CHECK_FILE=check_file)
        log("Azurite %s on 127.0.0.1:%d, proxy on 127.0.0.1:%d, in %s" % (
            AZURITE_VERSION, az_port, pport, tmp))
        try:
            rc = subprocess.run(cmd, env=tenv, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            log("FAIL: test timed out after %.0f s" % a.timeout)
            rc = 1
        if rc == 0 and a.check:
            rc = check_blobs(check_file, direct)
        if rc not in (0, SKIP):
            try:
                with open(proxy_log) as f:
                    log("last proxy log lines:\n" + "".join(f.readlines()[-30:]))
            except OSError:
                pass
        return rc
    except Exception as e:  # noqa: BLE001
        log("FAIL: %s" % e)
        return 1
    finally:
        if proxy:
            proxy.stop()
        if azurite:
            azurite.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
