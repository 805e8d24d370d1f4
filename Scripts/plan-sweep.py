#!/usr/bin/env python3
"""Step time against peak memory of checkpoint plans: the planner at budgets 25%, 50% and 75% of the
way from the smallest reachable peak to the plain peak, the hand-made memory-efficient plan, no plan,
and Chen et al.'s segments, each measured by `reprise bench` (training steps, allocator peak).

Usage: Scripts/plan-sweep.py [--models densenet,resnet50,seqresnet,mobilenetv2] [--batch-size 64]
                              [--steps 10] [--rounds 3] [--csv docs/time-vs-memory.csv]
Each point is measured in --rounds alternating rounds (the median of the rounds' median step times,
the least min, the largest peaks); rows of models not measured keep their values in the CSV.
Needs a release build (`swift build -c release --product reprise`). Runs one command at a time.
"""
import argparse
import csv
import json
import subprocess
import sys

MODELS = {
    "densenet": ["--model", "densenet-bc", "--depth", "100", "--growth-rate", "12"],
    "resnet50": ["--model", "resnet50", "--conv", "standard"],
    "seqresnet": ["--model", "seqresnet", "--granularity", "8", "--widening", "4", "--blocks-per-stage", "1"],
    "mobilenetv2": ["--model", "mobilenetv2", "--conv", "standard"],
}
REPRISE = ".build/release/reprise"


def run(args):
    out = subprocess.run([REPRISE] + args + ["--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--segments", default="2,4,8")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the points; the median of their medians is reported")
    parser.add_argument("--csv", default="docs/time-vs-memory.csv")
    a = parser.parse_args()
    rows = []
    for name in a.models.split(","):
        model = MODELS[name] + ["--batch-size", str(a.batch_size)]
        bench = model + ["--steps", str(a.steps)]
        ends = run(["plan"] + model + ["--budget-fraction", "1"])
        low, high = ends["minimumPeakBytes"], ends["plainPeakBytes"]
        points = [("plain", []), ("memory-efficient", ["--memory-efficient"])]
        points += [(f"planner {int(f * 100)}%", ["--memory-budget", str(low + int(f * (high - low)))]) for f in (0.25, 0.5, 0.75)]
        points += [(f"{s} segments", ["--checkpoint-segments", s]) for s in a.segments.split(",")]
        planned_points = []
        for label, options in points:
            budget, planned = None, None
            if options[:1] == ["--memory-budget"]:
                # Planned in one process, trained in another, so that the trained process's peak
                # resident memory is its own (profiling runs the plain step).
                planned = run(["plan"] + model + options)
                path = f"/tmp/plan-sweep-{name}-{label.split()[-1]}.json"
                with open(path, "w") as f:
                    json.dump(planned, f)
                budget = planned["budgetBytes"]
                options = ["--plan", path]
            planned_points.append((label, options, budget, planned))
        # Rounds over the points in turn, so that a drift of the machine's speed spreads over all.
        results = {label: [] for label, _, _, _ in planned_points}
        for _ in range(a.rounds):
            for label, options, _, _ in planned_points:
                results[label].append(run(["bench"] + bench + options))
        for label, options, budget, planned in planned_points:
            runs = results[label]
            r = dict(runs[0])
            r["stepSecondsMedian"] = sorted(x["stepSecondsMedian"] for x in runs)[len(runs) // 2]
            r["stepSecondsMin"] = min(x["stepSecondsMin"] for x in runs)
            r["peakBytes"] = max(x["peakBytes"] for x in runs)
            r["peakResidentBytes"] = max(x["peakResidentBytes"] for x in runs)
            row = {
                "model": name, "plan": label, "stepSecondsMedian": round(r["stepSecondsMedian"], 4), "stepSecondsMin": round(r["stepSecondsMin"], 4), "peakBytes": r["peakBytes"], "peakResidentBytes": r["peakResidentBytes"],
                "budgetBytes": budget or "", "plannedPeakBytes": planned["predictedPeakBytes"] if budget else "",
                "peakOverBudget": round(r["peakBytes"] / budget, 4) if budget else "", "regions": r["regions"],
                "minimumPeakBytes": low, "plainPeakBytes": high,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    # Rows of models not measured now are kept from the file.
    try:
        with open(a.csv) as f:
            kept = [r for r in csv.DictReader(f) if r["model"] not in {row["model"] for row in rows}]
    except FileNotFoundError:
        kept = []
    rows = kept + rows
    with open(a.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {a.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
