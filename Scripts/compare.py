"""Reprise against PyTorch on the same machine, same run: DenseNet-BC (k=12) training steps on random
data, plain and memory-efficient. Prints one table (median step time, peak resident memory, ratios) and,
with --sweep, writes docs/memory-vs-depth.csv and docs/memory-vs-depth.svg (peak memory against depth,
like Figure 4 of the memory-efficient DenseNet report).

Usage: python3 Scripts/compare.py [--depths 100] [--batch 64] [--steps 5] [--threads 2] [--rounds 1] [--sweep]
With --rounds R, each configuration runs R times, Reprise and PyTorch back to back in each round (this
shared machine's speed drifts over minutes); the table shows the medians over rounds and the time
ratio's median, with the range of the rounds' own ratios.
PyTorch's side runs ../shared/anchors/torch_densenet.py when `import torch` works (set PYTHON to the
interpreter that has it); otherwise only Reprise's side is measured. Never part of CI."""
import argparse, csv, json, os, subprocess, sys

def reprise(depth, batch, steps, threads, efficient):
    command = [".build/release/reprise", "bench", "--model", "densenet-bc", "--depth", str(depth), "--batch-size", str(batch),
               "--steps", str(steps), "--threads", str(threads), "--json"] + (["--memory-efficient"] if efficient else [])
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return {"step": result["stepSecondsMedian"], "rssMiB": result["peakResidentBytes"] / 2**20, "tensorMiB": result["peakBytes"] / 2**20}

def pytorch(python, anchor, depth, batch, steps, threads, efficient):
    if not python:
        return None
    command = [python, anchor, str(depth), "12", str(batch), str(int(efficient)), str(steps), str(threads)]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return {"step": result["step_s_median"], "rssMiB": result["peak_rss_mib"]}

def median(values):
    ordered = sorted(values); middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

def torch_python():
    for python in [os.environ.get("PYTHON"), sys.executable, "python3"]:
        if python and subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None

def svg(rows, path):
    """A line chart of peak resident memory (MiB) against depth, one line per implementation."""
    series = {}
    for r in rows:
        series.setdefault(f"{r['implementation']} {'memory-efficient' if r['efficient'] else 'plain'}", []).append((r["depth"], r["rssMiB"]))
    depths = sorted({r["depth"] for r in rows}); top = max(r["rssMiB"] for r in rows) * 1.1
    width, height, left, bottom = 640, 400, 70, 50
    x = lambda d: left + (d - depths[0]) / max(1, depths[-1] - depths[0]) * (width - left - 20)
    y = lambda m: height - bottom - m / top * (height - bottom - 20)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="20" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 10}" text-anchor="middle">DenseNet-BC depth (k=12, batch {rows[0]["batch"]})</text>',
             f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">peak resident memory (MiB)</text>']
    for d in depths:
        parts.append(f'<text x="{x(d)}" y="{height - bottom + 15}" text-anchor="middle">{d}</text>')
    for i in range(5):
        m = top * i / 5
        parts.append(f'<text x="{left - 5}" y="{y(m) + 4}" text-anchor="end">{m:.0f}</text>')
    for i, (name, points) in enumerate(sorted(series.items())):
        color = colors[i % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(f"{x(d)},{y(m)}" for d, m in sorted(points))}"/>')
        parts.append(f'<text x="{left + 10}" y="{30 + 15 * i}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts) + "\n")

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", default="100"); parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5); parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1); parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    anchor = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/anchors/torch_densenet.py")
    python = torch_python() if os.path.exists(anchor) else None
    depths = [40, 100, 160, 250] if args.sweep else [int(d) for d in args.depths.split(",")]
    rows = []
    print(f"{'depth':>5} {'mode':>10} | {'Reprise step':>12} {'RSS MiB':>8} | {'PyTorch step':>12} {'RSS MiB':>8} | {'time ratio':>10} {'RSS ratio':>9}")
    for depth in depths:
        for efficient in (False, True):
            rounds = [(reprise(depth, args.batch, args.steps, args.threads, efficient),
                       pytorch(python, anchor, depth, args.batch, args.steps, args.threads, efficient)) for _ in range(args.rounds)]
            ours = {"step": median([r[0]["step"] for r in rounds]), "rssMiB": max(r[0]["rssMiB"] for r in rounds)}
            theirs = rounds[0][1] and {"step": median([r[1]["step"] for r in rounds]), "rssMiB": max(r[1]["rssMiB"] for r in rounds)}
            mode = "efficient" if efficient else "plain"
            line = f"{depth:>5} {mode:>10} | {ours['step']:>11.3f}s {ours['rssMiB']:>8.0f} | "
            if theirs:
                ratios = sorted(r[0]["step"] / r[1]["step"] for r in rounds)
                line += f"{theirs['step']:>11.3f}s {theirs['rssMiB']:>8.0f} | {median(ratios):>10.2f} {ours['rssMiB'] / theirs['rssMiB']:>9.2f}"
                if len(rounds) > 1:
                    line += f"  (rounds {ratios[0]:.2f} to {ratios[-1]:.2f}; Reprise " + ", ".join(f"{r[0]['step']:.3f}" for r in rounds)
                    line += "; PyTorch " + ", ".join(f"{r[1]['step']:.3f}" for r in rounds) + ")"
            else:
                line += f"{'(no torch)':>12} {'':>8} |"
            print(line, flush=True)
            rows.append({"implementation": "Reprise", "depth": depth, "efficient": efficient, "batch": args.batch, "stepSeconds": ours["step"], "rssMiB": ours["rssMiB"]})
            if theirs:
                rows.append({"implementation": "PyTorch", "depth": depth, "efficient": efficient, "batch": args.batch, "stepSeconds": theirs["step"], "rssMiB": theirs["rssMiB"]})
    if args.sweep:
        os.makedirs("docs", exist_ok=True)
        with open("docs/memory-vs-depth.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0])); writer.writeheader(); writer.writerows(rows)
        svg(rows, "docs/memory-vs-depth.svg")
        print("wrote docs/memory-vs-depth.csv and docs/memory-vs-depth.svg")

if __name__ == "__main__":
    main()
