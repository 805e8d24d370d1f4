#!/usr/bin/env python3
"""docs/time-vs-memory.svg from docs/time-vs-memory.csv (Scripts/plan-sweep.py) and, when present,
docs/time-vs-memory-torch.csv (Scripts/torch-checkpoint-sequential.py --sweep): median step time
against peak resident memory, one panel per model (DenseNet-BC-100 and ResNet-50 by default).

Usage: Scripts/plot-time-vs-memory.py [--models densenet,resnet50] [--out docs/time-vs-memory.svg]
"""
import argparse
import csv
import os

TITLES = {"densenet": "DenseNet-BC-100 (k=12)", "resnet50": "CIFAR ResNet-50 (standard)",
          "seqresnet": "SeqResNet(8, 4, 1)", "mobilenetv2": "MobileNetV2 (CIFAR)"}
COLORS = {"planner": "#1f77b4", "memory-efficient": "#2ca02c", "plain": "#000000", "segments": "#9467bd", "pytorch": "#ff7f0e"}


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def panel(name, rows, torch_rows, x0, width, height):
    """One panel's SVG elements: axes, ticks, and the series of one model."""
    points = []  # (series, label, MiB, seconds)
    for r in rows:
        plan = r["plan"]
        series = "planner" if plan.startswith("planner") else "segments" if plan.endswith("segments") else plan
        points.append((series, plan.replace("planner ", ""), int(r["peakResidentBytes"]) / 2**20, float(r["stepSecondsMedian"])))
    for r in torch_rows:
        label = f'{r["segments"]} seg.' if r["segments"] != "0" else "plain"
        points.append(("pytorch", label, int(r["peakResidentBytes"]) / 2**20, float(r["stepSecondsMedian"])))
    top_x = max(p[2] for p in points) * 1.08
    top_y = max(p[3] for p in points) * 1.15
    left, bottom, right, up = 60, 50, 15, 35
    X = lambda m: x0 + left + m / top_x * (width - left - right)
    Y = lambda s: height - bottom - s / top_y * (height - bottom - up)
    parts = [
        f'<text x="{x0 + width / 2}" y="20" text-anchor="middle" font-weight="bold">{TITLES.get(name, name)}, batch 64</text>',
        f'<line x1="{X(0)}" y1="{Y(0)}" x2="{X(top_x)}" y2="{Y(0)}" stroke="black"/>',
        f'<line x1="{X(0)}" y1="{Y(0)}" x2="{X(0)}" y2="{Y(top_y)}" stroke="black"/>',
        f'<text x="{x0 + width / 2}" y="{height - 12}" text-anchor="middle">peak resident memory (MiB)</text>',
        f'<text x="{x0 + 15}" y="{height / 2}" transform="rotate(-90 {x0 + 15} {height / 2})" text-anchor="middle">median step (s)</text>',
    ]
    for i in range(6):
        m, s = top_x * i / 5, top_y * i / 5
        parts.append(f'<text x="{X(m)}" y="{Y(0) + 15}" text-anchor="middle">{m:.0f}</text>')
        parts.append(f'<text x="{X(0) - 5}" y="{Y(s) + 4}" text-anchor="end">{s:.2f}</text>')
    for series in ["planner", "segments", "pytorch"]:
        line = sorted((p for p in points if p[0] == series), key=lambda p: p[2])
        if len(line) > 1:
            coords = " ".join(f"{X(p[2]):.1f},{Y(p[3]):.1f}" for p in line)
            parts.append(f'<polyline fill="none" stroke="{COLORS[series]}" stroke-width="1.5" points="{coords}"/>')
    placed = []
    for series, label, m, s in sorted(points, key=lambda p: (p[2], p[3])):
        c = COLORS.get(series, "#000000")
        parts.append(f'<circle cx="{X(m):.1f}" cy="{Y(s):.1f}" r="4" fill="{c}"/>')
        # Labels go above their point, moved up past labels already placed nearby.
        free = lambda x, y: not any(abs(x - px) < 60 and abs(y - py) < 11 for px, py in placed)
        spots = [(X(m) + 6, Y(s) - 6 + d) for d in (0, 16, -11, 27, -22, 38, -33)]
        lx, ly = next((p for p in spots if free(*p)), spots[0])
        placed.append((lx, ly))
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" fill="{c}" font-size="10">{label}</text>')
    return parts


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="densenet,resnet50")
    parser.add_argument("--csv", default=os.path.join(here, "..", "docs", "time-vs-memory.csv"))
    parser.add_argument("--torch-csv", default=os.path.join(here, "..", "docs", "time-vs-memory-torch.csv"))
    parser.add_argument("--out", default=os.path.join(here, "..", "docs", "time-vs-memory.svg"))
    a = parser.parse_args()
    rows, torch_rows = load(a.csv), load(a.torch_csv)
    names = a.models.split(",")
    width, height = 480, 380
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(names)}" height="{height + 45}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>']
    for i, name in enumerate(names):
        parts += panel(name, [r for r in rows if r["model"] == name], [r for r in torch_rows if r["model"] == name], i * width, width, height)
    legend = [("Reprise planner (budget % of the way from smallest to plain peak)", "planner"),
              ("Reprise hand-made memory-efficient plan", "memory-efficient"), ("Reprise plain", "plain"),
              ("Reprise checkpoint segments", "segments")] + ([("PyTorch checkpoint_sequential", "pytorch")] if torch_rows else [])
    for j, (text, series) in enumerate(legend):
        parts.append(f'<text x="{10 + (j % 2) * 480}" y="{height + 5 + 14 * (j // 2)}" fill="{COLORS[series]}" font-size="11">● {text}</text>')
    parts.append("</svg>")
    with open(a.out, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
