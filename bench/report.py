#!/usr/bin/python3
"""report.py — turn a bench script's long-format CSV into bench/results/<name>.md
(+ .csv, + PNG plots through gnuplot), and build bench/results/README.md.

  report.py --name NAME --title TITLE --csv ROWS.csv --cmd CMD [--notes FILE]
            [--bench-dir DIR] --out RESULTS_DIR
  report.py --readme --out RESULTS_DIR --cmd CMD [--elapsed S]

Input rows: scenario,metric,unit,system,value — repeated runs repeat rows; the
table shows the median and, with more than one run, the spread (min..max).
The ratio column is glidefs(d) / the row's reference system (REFS below).
Targets (TARGETS below) are checked on the medians. Standard library only.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys

GLIDE = ("glidefsd", "glidefs")
# reference system for the ratio column, first one present in the row wins
REFS = ("nbdkit-file", "plain file", "aws s3 cp", "GET loop", "LRU (simulated)", "none", "plain",
        "target")

# name -> [(label, scenario, metric, system, kind, threshold, ref_system)]
# kind: ratio>= / ratio<= (system / ref), abs<= / abs>=
TARGETS = {
    "nbd_fio": [
        ("cached 4 KiB random read, QD64, 1 conn: >= 90% of nbdkit-file IOPS",
         "randread (cached) 1 conn QD64", "IOPS", "glidefsd", "ratio>=", 0.9, "nbdkit-file"),
        ("4 KiB random write, QD64, 1 conn: >= 90% of nbdkit-file IOPS",
         "randwrite 1 conn QD64", "IOPS", "glidefsd", "ratio>=", 0.9, "nbdkit-file"),
        ("cached 4 KiB random read, QD64 over 4 conns: >= 90% of nbdkit-file IOPS",
         "randread (cached) 4 conns QD64", "IOPS", "glidefsd", "ratio>=", 0.9, "nbdkit-file"),
        ("4 KiB random write, QD64 over 4 conns: >= 90% of nbdkit-file IOPS",
         "randwrite 4 conns QD64", "IOPS", "glidefsd", "ratio>=", 0.9, "nbdkit-file"),
        ("QD1 write latency (mean) within 1.2x of nbdkit-file",
         "randwrite 1 conn QD1", "mean write lat", "glidefsd", "ratio<=", 1.2, "nbdkit-file"),
    ],
    "tls": [
        ("TLS: 4 KiB random read QD64 >= 85% of glidefsd's plaintext IOPS",
         "randread 4 KiB QD64 (cached)", "IOPS", "glidefsd TLS", "ratio>=", 0.85, "glidefsd"),
        ("TLS: 4 KiB random write QD64 >= 85% of glidefsd's plaintext IOPS",
         "randwrite 4 KiB QD64", "IOPS", "glidefsd TLS", "ratio>=", 0.85, "glidefsd"),
        ("TLS: 1 MiB sequential read >= 85% of glidefsd's plaintext throughput",
         "sequential read 1 MiB QD8", "throughput", "glidefsd TLS", "ratio>=", 0.85, "glidefsd"),
        ("TLS: 4 KiB random read QD64 >= 1.0x nbdkit TLS IOPS",
         "randread 4 KiB QD64 (cached)", "IOPS", "glidefsd TLS", "ratio>=", 1.0, "nbdkit TLS"),
        ("TLS: 4 KiB random write QD64 >= 1.0x nbdkit TLS IOPS",
         "randwrite 4 KiB QD64", "IOPS", "glidefsd TLS", "ratio>=", 1.0, "nbdkit TLS"),
    ],
    "lib_latency": [
        ("in-process 4 KiB pwrite p50 <= 10 us", "pwrite 4KiB", "p50", "glidefs", "abs<=", 10,
         None),
        ("in-process 4 KiB pwrite p99 <= 50 us", "pwrite 4KiB", "p99", "glidefs", "abs<=", 50,
         None),
        ("random write IOPS >= 70% of plain pwrite", "randwrite 4KiB 2 threads", "IOPS",
         "glidefs", "ratio>=", 0.7, "plain file"),
        ("random read IOPS (clean cache) >= 70% of plain pread",
         "randread 4KiB 2 threads (clean cache)", "IOPS", "glidefs", "ratio>=", 0.7,
         "plain file"),
        ("random read IOPS (journal) >= 70% of plain pread",
         "randread 4KiB 2 threads (journal)", "IOPS", "glidefs", "ratio>=", 0.7, "plain file"),
    ],
    "flush": [
        ("FLUSH p99 <= 10 ms with %s MiB dirty" % mb, "FLUSH with %s MiB dirty" % mb, "p99",
         "glidefs", "abs<=", 10, None) for mb in ("0", "64", "256", "1024")
    ],
    "memory": [
        ("block map <= 16 bytes of RAM per written 128 KiB block", "memory",
         "block map RAM per written 128 KiB block", "glidefs", "abs<=", 16, None),
    ],
    "churn": [
        ("stored/live <= 1.2x at steady state (last third of the writes), default settings",
         "churn", "stored/live steady state (last third)", "glidefs", "abs<=", 1.2, None),
        ("stored/live <= 1.2x at steady state, default settings, 4x faster overwrites (stress)",
         "churn-fast", "stored/live steady state (last third)", "glidefs", "abs<=", 1.2,
         None),
        ("<= 1 PUT per 3.2 MiB (25 x 128 KiB = 3200 KiB) of unique dirty data: segment PUTs",
         "churn", "unique dirty data per segment PUT (last third)", "glidefs", "abs>=", 3200,
         None),
    ],
    "codec": [
        ("drain throughput, encrypted >= 0.9x plain",
         "512 MiB incompressible (file:// store)", "sync (drain) throughput", "encrypted",
         "ratio>=", 0.9, "plain"),
        ("cold sequential read of a woken volume, encrypted >= 0.8x plain",
         "512 MiB incompressible (file:// store)", "cold sequential read throughput", "encrypted",
         "ratio>=", 0.8, "plain"),
    ],
    "codec_nbd": [
        ("NBD 4 KiB random read QD64 on a cached volume, encrypted >= 0.95x plain (unchanged)",
         "randread 4 KiB QD64 (cached)", "IOPS", "glidefsd encrypted", "ratio>=", 0.95,
         "glidefsd"),
    ],
    "scrub": [
        ("deep scrub throughput >= 0.8x a parallel GET loop over the same objects",
         "deep scrub", "throughput", "glidefs", "ratio>=", 0.8, "GET loop"),
        ("quick scrub: <= 1 GET or HEAD per segment", "quick scrub",
         "GETs+HEADs per segment", "glidefs", "abs<=", 1.0, None),
    ],
    "s3": [
        ("sequential 1 MiB read of a woken volume >= 0.8x a plain GET loop",
         "sequential 1 MiB read (woken volume, empty cache)", "throughput", "glidefs",
         "ratio>=", 0.8, "GET loop"),
        ("drain throughput >= 1.0x aws s3 cp of the same bytes",
         "drain vs upload of the same bytes", "throughput", "glidefs", "ratio>=", 1.0,
         "aws s3 cp"),
    ],
}


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def machine(bench_dir):
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
    d = bench_dir if os.path.isdir(bench_dir) else "/var/tmp"
    dev = sh("df --output=source,fstype %s | tail -1" % d)
    blk = dev.split()[0] if dev else ""
    model = sh("lsblk -ndo MODEL,SIZE,ROTA %s" % blk) if blk.startswith("/dev/") else ""
    rota = ""
    if model:
        parts = model.split()
        rota = " (rotational)" if parts and parts[-1] == "1" else " (non-rotational)"
        model = " ".join(parts[:-1])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(), "nproc": os.cpu_count(), "cpu": cpu, "mem": mem,
        "kernel": platform.release(),
        "disk": "%s%s%s, bench dir %s" % (dev, (" " + model) if model.strip() else "", rota, d),
        "load": sh("cut -d' ' -f1-3 /proc/loadavg"),
        "commit": os.environ.get("BENCH_COMMIT", "unknown"),
    }


def machine_md(m):
    return ("Machine: %s — %s CPUs (%s), %s RAM, kernel %s; disk: %s; load average at the end: %s. "
            "Date: %s. Source: %s." % (m["host"], m["nproc"], m["cpu"], m["mem"], m["kernel"],
                                       m["disk"], m["load"], m["date"], m["commit"]))


def load(path):
    rows = {}
    order_s, order_sys = [], []
    with open(path, newline="") as f:
        for r in csv.reader(f):
            if len(r) != 5 or r[0] == "scenario":
                continue
            scen, metric, unit, system, val = r
            try:
                v = float(val)
            except ValueError:
                continue
            key = (scen, metric, unit)
            if key not in rows:
                rows[key] = {}
                order_s.append(key)
            rows[key].setdefault(system, []).append(v)
            if system not in order_sys:
                order_sys.append(system)
    return rows, order_s, order_sys


def fmt(v):
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def cell(vals):
    if not vals:
        return ""
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m)
    return "%s (%s..%s)" % (fmt(m), fmt(min(vals)), fmt(max(vals)))


def med(rows, scen, metric, system):
    for (s, mt, _u), d in rows.items():
        if s == scen and mt == metric and system in d:
            return statistics.median(d[system])
    return None


def check_targets(name, rows):
    out = []
    for label, scen, metric, system, kind, thr, ref in TARGETS.get(name, []):
        v = med(rows, scen, metric, system)
        if v is None:
            continue
        errs = [mt for (sc, mt, _u), d in rows.items()
                if sc == scen and mt.startswith("fio error") and system in d]
        if errs:
            out.append({"label": label, "ok": None,
                        "value": "%s failed in this run: %s" % (system, errs[0])})
            continue
        if kind.startswith("ratio"):
            r = med(rows, scen, metric, ref)
            if not r:
                continue
            x = v / r
            ok = x >= thr if kind == "ratio>=" else x <= thr
            shown = "%.2fx of %s (%s vs %s)" % (x, ref, fmt(v), fmt(r))
        else:
            ok = v <= thr if kind == "abs<=" else v >= thr
            shown = fmt(v)
        out.append({"label": label, "ok": ok, "value": shown})
    return out


# rows without glidefs(d): setting on vs off
PAIRS = (("encrypted", "plain"), ("zstd", "none"))


def verdict(t):
    return "NOT MEASURED" if t["ok"] is None else "MET" if t["ok"] else "MISSED"


def ratio_of(d):
    g = next((s for s in GLIDE if s in d), None)
    ref = next((s for s in REFS if s in d and s != g), None)
    if not g:
        g, ref = next(((a, b) for a, b in PAIRS if a in d and b in d), (None, None))
    if not g or not ref:
        return "", None, None
    a, b = statistics.median(d[g]), statistics.median(d[ref])
    if not b:
        return "", None, None
    return "%.2f" % (a / b), g, ref


def gnuplot(script, out_png):
    if not shutil.which("gnuplot"):
        print("report: gnuplot missing (apt-get install gnuplot-nox): no %s" % out_png,
              file=sys.stderr)
        return False
    r = subprocess.run(["gnuplot"], input=script, text=True, stderr=subprocess.PIPE)
    if r.returncode != 0:
        print("report: gnuplot failed for %s: %s" % (out_png, r.stderr[-500:]), file=sys.stderr)
        return False
    return True


def bar_plot(rows, items, systems, out_dir, png, title, ylabel, logy=False):
    """items: [(label, scenario, metric)]; one cluster per item, one bar per system."""
    present = [s for s in systems if any(med(rows, sc, mt, s) is not None for _, sc, mt in items)]
    if not present:
        return None
    dat = os.path.join(out_dir, ".%s.dat" % png)
    with open(dat, "w") as f:
        f.write("label\t" + "\t".join('"%s"' % s for s in present) + "\n")
        for label, sc, mt in items:
            vals = [med(rows, sc, mt, s) for s in present]
            f.write('"%s"\t' % label + "\t".join("%g" % v if v is not None else "NaN"
                                                  for v in vals) + "\n")
    cols = " , ".join("'%s' using %d:xtic(1) title columnheader(%d)" % (dat, i + 2, i + 2)
                      for i in range(len(present)))
    script = """set terminal pngcairo size 1200,600 noenhanced font ",10"
set output '%s'
set title '%s'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top right
set grid ytics
set ylabel '%s'
set xtics rotate by -25 scale 0
%s
set yrange [%s:*]
plot %s
""" % (os.path.join(out_dir, png), title, ylabel, "set logscale y" if logy else "",
       "1000" if logy else "0", cols)
    ok = gnuplot(script, png)
    os.unlink(dat)
    return png if ok else None


def churn_plot(tsvs, out_dir, png, live_mb):
    """tsvs: [(path, title)]: stored/live (left) and PUTs per GiB written (right) vs GiB written."""
    series = []
    for i, (tsv, title) in enumerate(tsvs):
        if not os.path.exists(tsv):
            continue
        dat = os.path.join(out_dir, ".churn%d.dat" % i)
        with open(tsv) as f:
            lines = [l.rstrip("\n").split("\t") for l in f][1:]
        # the write phase: until the writes reach their total (then the drain runs)
        total = max((float(p[2]) for p in lines if len(p) >= 9), default=0)
        with open(dat, "w") as o:
            for p in lines:
                if len(p) < 9 or p[1] != "run" or float(p[2]) >= total:
                    continue
                written, stored, live, puts, segs, blocks = (float(x) for x in p[2:8])
                if live <= 0 or written <= 0:
                    continue
                o.write("%.4f\t%.4f\t%.2f\n" % (written / 2**30, stored / live,
                                                puts / (written / 2**30)))
        series.append((dat, title))
    if not series:
        return None
    plots = []
    for dat, title in series:
        plots.append("'%s' using 1:2 with lines lw 2 title 'stored/live, %s'" % (dat, title))
    plots.append("1.2 with lines dt 2 lc rgb 'red' title 'goal 1.2x'")
    for dat, title in series:
        plots.append("'%s' using 1:3 axes x1y2 with lines lw 1 dt 3 title 'PUTs per GiB written, %s "
                     "(right axis)'" % (dat, title))
    script = """set terminal pngcairo size 1200,600 noenhanced font ",10"
set output '%s'
set title 'Random overwrites (4 KiB..1 MiB) of a %s MiB volume: stored/live and PUTs per GiB written'
set xlabel 'GiB written (fill, then overwrites)'
set ylabel 'stored bytes / live bytes'
set y2label 'PUTs per GiB written'
set ytics nomirror
set y2tics
set grid
set key top left
plot %s
""" % (os.path.join(out_dir, png), live_mb, ", \\\n     ".join(plots))
    ok = gnuplot(script, png)
    for dat, _ in series:
        os.unlink(dat)
    return png if ok else None


PLOTS = {
    "nbd_fio": lambda rows, out, sysd: [bar_plot(
        rows, [(s[0], s[0], "IOPS") for s in rows if s[1] == "IOPS"],
        ["glidefsd", "nbdkit-file", "qemu-nbd", "raw file"], out, "nbd_fio.png",
        "fio nbd engine, 4 KiB: IOPS (log scale)", "IOPS", logy=True)],
    "lib_latency": lambda rows, out, sysd: [bar_plot(
        rows, [("%s %s" % (s[0], s[1]), s[0], s[1]) for s in rows
               if s[2] == "us" and s[1] in ("p50", "p99", "p99.9")],
        ["glidefs", "plain file"], out, "lib_latency.png",
        "in-process 4 KiB latency: libglidefs vs plain pwrite/pread (log scale)", "microseconds",
        logy=True)],
    "flush": lambda rows, out, sysd: [bar_plot(
        rows, [("%s %s" % (s[0], s[1]), s[0], s[1]) for s in rows
               if s[2] == "ms" and s[1] in ("p50", "p99", "p99.9")],
        ["glidefs", "plain file"], out, "flush.png",
        "FLUSH latency (4 KiB write + flush loop) with dirty data outstanding (log scale)",
        "milliseconds", logy=True)],
    "s3": lambda rows, out, sysd: [bar_plot(
        rows, [(s[0], s[0], s[1]) for s in rows if s[1] == "throughput"],
        ["glidefs", "aws s3 cp", "GET loop"], out, "s3.png",
        "glidefs vs plain S3 clients on the same s3rver", "MiB/s")],
    "codec": lambda rows, out, sysd: [bar_plot(
        rows, [("%s: %s" % (s[0], s[1]), s[0], s[1]) for s in rows if s[2] in ("MiB/s",)],
        ["plain", "encrypted"], out, "codec.png", "encryption off vs on (file:// store)",
        "MiB/s")],
}


def write_report(a):
    rows, order, systems = load(a.csv)
    m = machine(a.bench_dir)
    os.makedirs(a.out, exist_ok=True)
    # aggregated CSV
    with open(os.path.join(a.out, a.name + ".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "metric", "unit", "system", "median", "min", "max", "runs",
                    "date", "machine"])
        for key in order:
            for s in systems:
                if s in rows[key]:
                    v = rows[key][s]
                    w.writerow(list(key) + [s, "%g" % statistics.median(v), "%g" % min(v),
                                            "%g" % max(v), len(v), m["date"],
                                            "%s CPUs %s, kernel %s" % (m["nproc"], m["cpu"],
                                                                       m["kernel"])])
    targets = check_targets(a.name, rows)
    lines = ["# %s" % a.title, "", machine_md(m), "",
             "Command: `%s`" % a.cmd, ""]
    if a.notes and os.path.exists(a.notes):
        lines += [open(a.notes).read().strip(), ""]
    if targets:
        lines += ["## Targets", ""]
        lines += ["- **%s**: %s — %s" % (verdict(t), t["label"], t["value"]) for t in targets]
        lines.append("")
    lines += ["## Results", "",
              "Median of the runs; with more than one run, (min..max) follows. "
              "Ratio = glidefs (or the setting that is on) / the reference named in the row.", ""]
    scen_order = []
    for key in order:
        if key[0] not in scen_order:
            scen_order.append(key[0])
    for scen in scen_order:
        keys = [k for k in order if k[0] == scen]
        sysl = [s for s in systems if any(s in rows[k] for k in keys)]
        sysl.sort(key=lambda s: (s not in GLIDE, systems.index(s)))
        lines += ["### %s" % scen, "",
                  "| metric | unit | " + " | ".join(sysl) + " | ratio |",
                  "|---|---|" + "---|" * len(sysl) + "---|"]
        for k in keys:
            r, num, ref = ratio_of(rows[k])
            lines.append("| %s | %s | %s | %s |" % (
                k[1], k[2], " | ".join(cell(rows[k].get(s, [])) for s in sysl),
                "%s (%s / %s)" % (r, num, ref) if r else ""))
        lines.append("")
    pngs = [p for p in (PLOTS[a.name](rows, a.out, systems) if a.name in PLOTS else []) if p]
    if a.name == "churn" and a.tsv:
        live = med(rows, "churn", "live data", "glidefs") or 0
        tsvs = [(t, os.path.basename(t)[:-4]) for t in a.tsv.split(",")]
        p = churn_plot(tsvs, a.out, "churn.png", "%.0f" % live)
        if p:
            pngs.append(p)
    for p in pngs:
        lines += ["![%s](%s)" % (p, p), ""]
    with open(os.path.join(a.out, a.name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "." + a.name + ".summary.json"), "w") as f:
        json.dump({"name": a.name, "title": a.title, "targets": targets, "pngs": pngs,
                   "machine": m, "cmd": a.cmd}, f)
    print("\n".join(lines))
    for t in targets:
        print("%s: %s — %s" % (verdict(t), t["label"], t["value"]))


def write_readme(a):
    sums = []
    for n in ("nbd_fio", "lib_latency", "flush", "s3", "codec", "zipf", "memory", "churn"):
        p = os.path.join(a.out, "." + n + ".summary.json")
        if os.path.exists(p):
            sums.append(json.load(open(p)))
    m = machine(a.bench_dir)
    lines = ["# GlideFS benchmark results", "",
             "Reproduce everything (release build, all scenarios, this directory rewritten):", "",
             "    %s" % a.cmd, "",
             "(`BENCH_QUICK=1 bench/run.sh` is a few-minute smoke run with smaller sizes and "
             "shorter phases.)", "",
             machine_md(m) + (" Whole run: %.0f min." % (float(a.elapsed) / 60)
                              if a.elapsed else ""), "",
             "Every number was taken with its peer in the same run on this machine; absolute "
             "numbers on a 2-core VM shared with other work are noisy, the ratios are what to "
             "read. Each file below has the exact command, the tables with the spread of the "
             "repeated runs, and notes on what was measured.", "",
             "## Targets", "", "| target | result | value | details |", "|---|---|---|---|"]
    for s in sums:
        for t in s["targets"]:
            v = verdict(t)
            lines.append("| %s | %s | %s | [%s](%s.md) |" % (
                t["label"], v if v == "MET" else "**%s**" % v, t["value"], s["name"], s["name"]))
    lines += ["", "## Result files", ""]
    for s in sums:
        lines.append("- [%s.md](%s.md) / [%s.csv](%s.csv) — %s" % (s["name"], s["name"], s["name"],
                                                                s["name"], s["title"]))
    known = {s["name"] + ".md" for s in sums} | {"README.md"}
    others = sorted(f for f in os.listdir(a.out) if f.endswith(".md") and f not in known)
    if others:
        lines += ["", "Other result files in this directory (not written by this run):", ""]
        for f in others:
            first = open(os.path.join(a.out, f)).readline().lstrip("# ").strip()
            lines.append("- [%s](%s) — %s" % (f, f, first))
    lines += ["", "## Plots", ""]
    for s in sums:
        for p in s["pngs"]:
            lines += ["![%s](%s)" % (p, p), ""]
    with open(os.path.join(a.out, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name")
    ap.add_argument("--title")
    ap.add_argument("--csv")
    ap.add_argument("--cmd", default="")
    ap.add_argument("--notes", default="")
    ap.add_argument("--tsv", default="")
    ap.add_argument("--bench-dir", default="/var/tmp/glidefs-bench")
    ap.add_argument("--out", required=True)
    ap.add_argument("--readme", action="store_true")
    ap.add_argument("--elapsed", default="")
    a = ap.parse_args()
    if a.readme:
        write_readme(a)
    else:
        write_report(a)


if __name__ == "__main__":
    main()
