"""One table from the files Benchmarks/peers/run.sh leaves in WORK: prints it and writes
RESULTS/peers.md, peers.json and peers.svg (ms per image against size, log scale, every runtime
and the floor).

    python Benchmarks/peers/report.py WORK RESULTS

The floor of a size is its graph GFLOP (mila's count: GFLOP/s x ms of `mila-infer bench`) over the
SGEMM rate, OpenBLAS's best GFLOP/s among the rates measured in the run (1024^3 and each set of
model shapes): the time that no runtime built on that GEMM could beat.
"""
import json
import os
import re
import sys

work, results = sys.argv[1], sys.argv[2]
machine = open(os.path.join(work, "machine.txt")).read().strip().splitlines()
peers = json.load(open(os.path.join(work, "peers.json")))


def mila(name):
    """mila's rows for `name`: per size, the round whose median is the median of the rounds
    (interleaved with the other mila runs), with every round's median in "rounds_ms"."""
    paths = sorted(p for p in os.listdir(work) if re.fullmatch(re.escape(name) + r"-r\d+\.json", p))
    if not paths:
        return None
    runs = [json.load(open(os.path.join(work, p))) for p in paths]
    rows = {}
    for size in [f"{r['height']}x{r['width']}" for r in runs[0]["rows"] if "ms_median" in r]:
        found = sorted((r for data in runs for r in data["rows"] if f"{r['height']}x{r['width']}" == size and "ms_median" in r),
                       key=lambda r: r["ms_median"])
        middle = dict(found[(len(found) - 1) // 2])
        middle["rounds_ms"] = [r["ms_median"] for r in found]
        rows[size] = middle
    return runs[0], rows


def aggregates(log):
    """{(size, family, variant): GFLOP/s, GB/s for dwconv3x3 (depthwise and copy)} of the kernel bench's aggregate lines, per section."""
    out, section = {}, None
    for line in open(os.path.join(work, log)):
        header = re.match(r"== .* at (\d+x\d+) ==", line)
        if header:
            section = header.group(1)
        row = re.match(r"\s+(\S+) (.+?)\s+([\d.]+) ms\s+([\d.]+) GFLOP/s\s+([\d.]+) GB/s", line)
        if row and section:
            # GB/s for the memory-bound families (depthwise, copy), GFLOP/s for the rest.
            value = float(row.group(5)) if row.group(1) == "dwconv3x3" else float(row.group(4))
            out[(section, row.group(1), row.group(2).strip())] = value
    return out


pocl, intel = mila("mila-pocl"), mila("mila-intel")
fg_pocl, fg_intel = mila("mila-fg-pocl"), mila("mila-fg-intel")
sgemm = peers["sgemm"]
rates = {"1024^3": sgemm["1024^3 OpenBLAS"]} | {k: v["openblas_gflops"] for k, v in sgemm.items() if isinstance(v, dict)}
rate_name, rate = max(rates.items(), key=lambda kv: kv[1])
sizes = list(pocl[1].keys())
runtimes = [("mila (PoCL)", pocl), ("mila (Intel runtime)", intel)]
columns = [name for name, data in runtimes if data] + list(peers["runtimes"].keys())


def ms(name, size):
    for label, data in runtimes:
        if label == name:
            return data[1].get(size, {}).get("ms_median") if data else None
    return peers["runtimes"].get(name, {}).get(size, {}).get("ms_median")


lines = [f"# mila and its peers: MLLA-T, batch 1, float32, 2 threads, ms per image", "",
         "mila's figures: median over interleaved rounds of `mila-infer bench` (each the median of its runs); the peers': one run each.", ""]
lines += [f"- {m}" for m in machine]
versions = peers["versions"]
lines.append(f"- mila {pocl[0]['engine']}: PoCL {pocl[0]['driver']}" + (f", Intel runtime {intel[0]['driver']}" if intel else ""))
lines.append("- peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
lines.append(f"- SGEMM rate (OpenBLAS through numpy, OPENBLAS_CORETYPE unset, best of the rates below): "
             f"**{rate:.1f} GFLOP/s** ({rate_name}); floor = graph GFLOP / that rate")
lines.append("")
header = ["size", "GFLOP", "floor ms"] + columns + ["best mila / floor"] + [f"{p} / best mila" for p in peers["runtimes"]]
lines.append("| " + " | ".join(header) + " |")
lines.append("|" + "---|" * len(header))
table = []
for size in sizes:
    row = pocl[1][size]
    gflop = row["gflops_per_s"] * row["ms_median"] / 1e3
    floor = gflop / rate * 1e3
    values = {c: ms(c, size) for c in columns}
    best = min(v for c, v in values.items() if c.startswith("mila") and v)
    cells = [size, f"{gflop:.2f}", f"{floor:.1f}"] + [f"{values[c]:.1f}" if values[c] else "-" for c in columns]
    cells.append(f"**{best / floor:.2f}x**")
    cells += [f"{values[p] / best:.2f}x" if values[p] else "-" for p in peers["runtimes"]]
    lines.append("| " + " | ".join(cells) + " |")
    table.append({"size": size, "gflop": gflop, "floor_ms": floor, "ms": values, "best_mila_over_floor": best / floor})

lines += ["", "## GEMM: mila's CPU kernel (gemm_reg) against OpenBLAS on the same shapes", "",
          "| shapes | mila GFLOP/s | OpenBLAS GFLOP/s | mila / OpenBLAS |", "|---|---|---|---|"]
for name, v in sgemm.items():
    if isinstance(v, dict):
        lines.append(f"| {name} ({len(v['shapes'])} shape{'s' if len(v['shapes']) > 1 else ''}) | {v['mila_gflops']:.1f} | {v['openblas_gflops']:.1f} | "
                     f"{v['mila_gflops'] / v['openblas_gflops']:.2f}x |")
if not isinstance(sgemm.get("1024^3"), dict):  # no mila figure for it in the log
    lines.append(f"| 1024^3 | | {sgemm['1024^3 OpenBLAS']:.1f} | |")

conv, dw = aggregates("conv.log"), aggregates("dwconv.log")
gemm = aggregates("gemm.log")
lines += ["", "## Convolutions (kernel bench, engine's CPU kernels)", "",
          "| size | dense 3x3 GFLOP/s | GEMM GFLOP/s | dense / GEMM | depthwise GB/s | copy GB/s | depthwise / copy |",
          "|---|---|---|---|---|---|---|"]
for size in sorted({k[0] for k in conv}, key=lambda s: int(s.split("x")[0])):
    dense = conv.get((size, "conv3x3", "cpu"))
    g = gemm.get((size, "gemm", "register"))
    d, c = dw.get((size, "dwconv3x3", "cpu")), dw.get((size, "dwconv3x3", "copy"))
    f = lambda v: f"{v:.1f}" if v else "-"
    r = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
    lines.append(f"| {size} | {f(dense)} | {f(g)} | {r(dense, g)} | {f(d)} | {f(c)} | {r(d, c)} |")

lines += ["", "## MILA-FG-T (forget-gated) against MLLA-T in mila", "", "| size | device | MLLA-T ms | MILA-FG-T ms | FG / MLLA |", "|---|---|---|---|---|"]
for label, base, fg in (("PoCL", pocl, fg_pocl), ("Intel runtime", intel, fg_intel)):
    if base and fg:
        for size in sizes:
            a, b = base[1][size]["ms_median"], fg[1].get(size, {}).get("ms_median")
            if b:
                lines.append(f"| {size} | {label} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
lines += ["", "## Batches: MLLA-T at 224, images/s in batches of 8 against batch 1", "",
          "| device | batch 1 images/s | batch 8 images/s | batch 8 / batch 1 |", "|---|---|---|---|"]
for label, base, name in (("PoCL", pocl, "mila-b8-pocl"), ("Intel runtime", intel, "mila-b8-intel")):
    batch = mila(name)
    if base and batch and "224x224" in base[1] and "224x224" in batch[1]:
        one, eight = base[1]["224x224"]["images_per_s"], batch[1]["224x224"]["images_per_s"]
        lines.append(f"| {label} | {one:.2f} | {eight:.2f} | {eight / one:.2f}x |")
agreement = peers.get("logits_rel_l2_to_torch", {})
if agreement:
    lines += ["", "Exported models against PyTorch (logits relative L2): " + "; ".join(
        f"{k} " + ", ".join(f"{s} {v:.1e}" for s, v in d.items()) for k, d in agreement.items())]
text = "\n".join(lines) + "\n"
print(text)
open(os.path.join(results, "peers.md"), "w").write(text)
json.dump({"machine": machine, "sgemm_rate": rate, "sgemm_rate_from": rate_name, "rows": table, "sgemm": sgemm,
           "versions": versions}, open(os.path.join(results, "peers.json"), "w"), indent=1)

# The plot: ms per image (log) against size, one line per runtime, the floor dashed.
W, H, L, R, T, B = 640, 400, 70, 170, 40, 50
values = [v for row in table for v in row["ms"].values() if v] + [row["floor_ms"] for row in table]
lo, hi = min(values) / 1.3, max(values) * 1.3
import math
px = lambda i: L + (W - L - R) * (i / max(1, len(table) - 1))
py = lambda v: T + (H - T - B) * (1 - (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)))
colours = ["#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="22" font-size="14">MLLA-T, batch 1, 2 threads: ms per image (log scale)</text>']
for decade in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1):
    for m in (1, 2, 5):
        v = m * 10 ** decade
        if lo <= v <= hi:
            svg.append(f'<line x1="{L}" x2="{W - R}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#ddd"/>'
                       f'<text x="{L - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
for i, row in enumerate(table):
    svg.append(f'<text x="{px(i):.1f}" y="{H - B + 18}" text-anchor="middle">{row["size"]}</text>')
series = [(c, [row["ms"][c] for row in table], colours[j % len(colours)], "") for j, c in enumerate(columns)]
series.append(("floor (GFLOP / SGEMM)", [row["floor_ms"] for row in table], "#444", ' stroke-dasharray="5,4"'))
for k, (name, ys, colour, dash) in enumerate(series):
    points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(ys) if v)
    svg.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
    svg.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{T + 16 * k}" y2="{T + 16 * k}" stroke="{colour}" stroke-width="2"{dash}/>'
               f'<text x="{W - R + 35}" y="{T + 16 * k + 4}">{name}</text>')
svg.append(f'<text x="{L}" y="{H - 8}" font-size="10" fill="#555">{machine[0][:110]}</text></svg>')
open(os.path.join(results, "peers.svg"), "w").write("\n".join(svg) + "\n")
