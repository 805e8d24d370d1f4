"""Reprise against PyTorch on the same machine, same run: training steps on random data, plain and
memory-efficient. Prints one table (median step time, peak resident memory, ratios) and, with --sweep,
writes docs/memory-vs-depth.csv and docs/memory-vs-depth.svg (peak memory against depth, like Figure 4
of the memory-efficient DenseNet report).

Usage: python3 Scripts/compare.py [--model densenet-bc] [--depths 100] [--batch 64] [--steps 5] [--threads 2]
                                  [--rounds 1] [--sweep]
       python3 Scripts/compare.py --model seqresnet [--granularity 8 --widening 4 --blocks 1] ...
       python3 Scripts/compare.py --model resnet20 [--convs standard,dsconv,multiception,mixconv] --batch 128 ...
       python3 Scripts/compare.py --model seresnet56|shakenet26-2x96d|mobilenetv2 --convs standard,multiception ...
       ... --modes plain,efficient,planned   (planned: the checkpoint planner's plan of the smallest peak)
With --rounds R, each configuration runs R times, Reprise and PyTorch back to back, plain and then
memory-efficient, in each round (this shared machine's speed drifts over minutes); the table shows the
medians over rounds and the time ratio's median, with the range of the rounds' own ratios, the
cache-line round trip between two threads measured just before and just after each Reprise run
(whether the two cores share a cache; the host can move them during a run), the ratio of each
side's fastest step over all rounds, and for each side what the memory-efficient mode costs over
plain: the median of the rounds' own ratios.
PyTorch's side runs ../shared/anchors/torch_densenet.py for DenseNet-BC and Scripts/torch_models.py for
the others, when `import torch` works (set PYTHON to the interpreter that has it); otherwise only
Reprise's side is measured. The parameter counts of both sides are compared, and the multiply-accumulates of
one image (`reprise summary` against Scripts/torch_models.py's count) where PyTorch's side counts them. Never
part of CI."""
import argparse, csv, json, os, subprocess, sys

def reprise(model_args, batch, steps, threads, plan_args):
    command = [".build/release/reprise", "bench"] + model_args + ["--batch-size", str(batch), "--steps", str(steps),
               "--threads", str(threads), "--json"] + plan_args
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return {"step": result["stepSecondsMedian"], "fastest": result["stepSecondsMin"], "rssMiB": result["peakResidentBytes"] / 2**20, "tensorMiB": result["peakBytes"] / 2**20,
            "params": result["parameters"]}

def summary_macs(model_args):
    """Reprise's multiply-accumulates of one image of the model (`reprise summary --json`)."""
    command = [".build/release/reprise", "summary"] + model_args + ["--json"]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["macs"]

def round_trip():
    """The cache-line round trip between two threads (`reprise bench --kernel roundtrip`), in ns: about 60-80
    where the two cores share a last-level cache, several times that across dies, where Reprise's streaming
    kernels slow down more than PyTorch's (docs/performance.md#two-dies)."""
    command = [".build/release/reprise", "bench", "--kernel", "roundtrip", "--json"]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["nanosecondsMedian"]

def pytorch(python, script, script_args, batch, steps, threads, efficient):
    if not python:
        return None
    command = [python, script] + script_args(batch, int(efficient), steps) + [str(threads)]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return {"step": result["step_s_median"], "fastest": result["step_s_min"], "rssMiB": result["peak_rss_mib"], "params": result["params"],
            "macs": result.get("macs")}

def smallest_peak_plan(model_args, batch, threads, path):
    """Writes the planner's plan of the smallest peak it reaches (`reprise plan --budget-fraction 0`) to path."""
    command = [".build/release/reprise", "plan"] + model_args + ["--batch-size", str(batch), "--threads", str(threads),
               "--budget-fraction", "0", "--json"]
    with open(path, "w") as f:
        f.write(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return path

def configurations(args, here):
    """(label, depth or None, Reprise's model arguments, PyTorch script, its arguments before THREADS) per configuration."""
    if args.model == "densenet-bc":
        anchor = os.path.join(here, "../../shared/anchors/torch_densenet.py")
        depths = [40, 100, 160, 250] if args.sweep else [int(d) for d in args.depths.split(",")]
        return [(str(d), d, ["--model", "densenet-bc", "--depth", str(d)], anchor,
                 lambda b, e, s, d=d: [str(d), "12", str(b), str(e), str(s)]) for d in depths]
    script = os.path.join(here, "torch_models.py")
    if args.model == "seqresnet":
        k, r, n = args.granularity, args.widening, args.blocks
        return [(f"k{k} r{r} N{n}", None, ["--model", "seqresnet", "--granularity", str(k), "--widening", str(r), "--blocks-per-stage", str(n)],
                 script, lambda b, e, s: ["seqresnet", str(k), str(r), str(n), str(b), str(e), str(s)])]
    return [(f"{args.model} {conv}", None, ["--model", args.model, "--conv", conv], script,
             lambda b, e, s, conv=conv: [args.model, conv, str(b), str(e), str(s)])
            for conv in args.convs.split(",")]

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
    parser.add_argument("--model", choices=["densenet-bc", "seqresnet", "resnet20", "seresnet56", "shakenet26-2x96d", "mobilenetv2"], default="densenet-bc")
    parser.add_argument("--depths", default="100"); parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--granularity", type=int, default=8); parser.add_argument("--widening", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=1); parser.add_argument("--convs", default="standard,dsconv,multiception,mixconv")
    parser.add_argument("--modes", default="plain,efficient",
                        help="plain, efficient (the hand-made plans) and planned (the planner's plan of the smallest peak it "
                             "reaches, made once per configuration); PyTorch runs memory-efficient for both of the last two")
    parser.add_argument("--steps", type=int, default=5); parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1); parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    if args.sweep and args.model != "densenet-bc":
        parser.error("--sweep is the DenseNet-BC depth sweep")
    here = os.path.dirname(os.path.abspath(__file__))
    configs = configurations(args, here)
    python = torch_python() if all(os.path.exists(c[3]) for c in configs) else None
    modes = args.modes.split(",")
    if not set(modes) <= {"plain", "efficient", "planned"}:
        parser.error(f"--modes takes plain, efficient and planned, got {args.modes}")
    rows = []
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, median of {args.steps} steps")
    print(f"{'config':>12} {'mode':>10} | {'Reprise step':>12} {'RSS MiB':>8} | {'PyTorch step':>12} {'RSS MiB':>8} | {'time ratio':>10} {'RSS ratio':>9}")
    for label, depth, model_args, script, script_args in configs:
        # Rounds outermost, so that each round's plain and memory-efficient runs are minutes apart at
        # most and their ratio, the memory-efficient mode's cost, is not the machine's drift.
        plan_args = {"plain": [], "efficient": ["--memory-efficient"]}
        if "planned" in modes:
            path = f"/tmp/reprise-compare-plan-{os.getpid()}.json"
            plan_args["planned"] = ["--plan", smallest_peak_plan(model_args, args.batch, args.threads, path)]
        macs = summary_macs(model_args)
        measured = {mode: [] for mode in modes}
        trips = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode in modes:
                before = round_trip()
                ours = reprise(model_args, args.batch, args.steps, args.threads, plan_args[mode])
                trips[mode].append((before, round_trip()))
                measured[mode].append((ours, pytorch(python, script, script_args, args.batch, args.steps, args.threads, mode != "plain")))
        for mode in modes:
            rounds = measured[mode]
            efficient = mode != "plain"
            ours = {"step": median([r[0]["step"] for r in rounds]), "rssMiB": max(r[0]["rssMiB"] for r in rounds)}
            theirs = rounds[0][1] and {"step": median([r[1]["step"] for r in rounds]), "rssMiB": max(r[1]["rssMiB"] for r in rounds)}
            line = f"{label:>12} {mode:>10} | {ours['step']:>11.3f}s {ours['rssMiB']:>8.0f} | "
            if theirs:
                ratios = sorted(r[0]["step"] / r[1]["step"] for r in rounds)
                line += f"{theirs['step']:>11.3f}s {theirs['rssMiB']:>8.0f} | {median(ratios):>10.2f} {ours['rssMiB'] / theirs['rssMiB']:>9.2f}"
                if len(rounds) > 1:
                    line += f"  (rounds {ratios[0]:.2f} to {ratios[-1]:.2f}; Reprise " + ", ".join(f"{r[0]['step']:.3f}" for r in rounds)
                    line += "; PyTorch " + ", ".join(f"{r[1]['step']:.3f}" for r in rounds)
                    line += "; cores' round trip before/after Reprise's runs " + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in trips[mode]) + " ns)"
                # Each side's fastest step over all rounds: what it does when this shared machine's other
                # tenants leave it the most memory bandwidth, which moves Reprise's medians more than PyTorch's.
                fastest = min(r[0]["fastest"] for r in rounds) / min(r[1]["fastest"] for r in rounds)
                line += f"  fastest steps {fastest:.2f}"
                if rounds[0][0]["params"] != rounds[0][1]["params"]:
                    line += f"  PARAMETERS DIFFER: Reprise {rounds[0][0]['params']}, PyTorch {rounds[0][1]['params']}"
                # The anchor of DenseNet-BC does not count them; torch_models.py does.
                if rounds[0][1]["macs"] is not None and rounds[0][1]["macs"] != macs:
                    line += f"  MULTIPLY-ACCUMULATES DIFFER: Reprise {macs}, PyTorch {rounds[0][1]['macs']}"
            else:
                line += f"{'(no torch)':>12} {'':>8} |"
            print(line, flush=True)
            rows.append({"implementation": "Reprise", "depth": depth, "efficient": efficient, "batch": args.batch, "stepSeconds": ours["step"], "rssMiB": ours["rssMiB"]})
            if theirs:
                rows.append({"implementation": "PyTorch", "depth": depth, "efficient": efficient, "batch": args.batch, "stepSeconds": theirs["step"], "rssMiB": theirs["rssMiB"]})
        for mode in [m for m in modes if m != "plain" and "plain" in modes]:
            def cost(side):
                if measured[mode][0][side] is None:
                    return "(no torch)"
                ratios = sorted(e[side]["step"] / p[side]["step"] - 1 for p, e in zip(measured["plain"], measured[mode]))
                return f"{median(ratios):+.0%} (rounds {ratios[0]:+.0%} to {ratios[-1]:+.0%})"
            print(f"{label:>12} {mode[:4] + '/plain':>10} | Reprise {cost(0)} | PyTorch {cost(1)}", flush=True)
        if "planned" in plan_args:
            os.remove(plan_args["planned"][1])
    if args.sweep:
        os.makedirs("docs", exist_ok=True)
        with open("docs/memory-vs-depth.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0])); writer.writeheader(); writer.writerows(rows)
        svg(rows, "docs/memory-vs-depth.svg")
        print("wrote docs/memory-vs-depth.csv and docs/memory-vs-depth.svg")

if __name__ == "__main__":
    main()
