#!/usr/bin/env python3
"""Two threads against one, Reprise beside PyTorch, in sets run one after another (never in CI).

Usage (after `swift build -c release --product reprise`):
  PYTHON=/path/to/python-with-torch python3 Scripts/compare-threads.py [--sets 3] [--threads 2] [--compare-threads 1]

Each set runs, in this order, each on both thread counts in turns:
  - Reprise's ResNet-20 step (batch 128) and PyTorch's (Scripts/torch_models.py), each within its own
    process, a step on one count and then one on the other;
  - the pool's own matrix product of 2048 x 2048 (`reprise bench --kernel matmul`): bound by the
    multiply-add units alone, so its speedup is what the host gives a second core's arithmetic in
    those minutes, the ceiling for a step's;
  - Reprise's DenseNet-BC-100 step (batch 64), in turns within its process, and PyTorch's
    (../shared/anchors/torch_densenet.py, which takes one thread count a run), in runs that
    alternate between the counts.
A host whose other tenants take a share of the cores moves every speedup between sets; the ratios
within a set, taken minutes apart at most, are the comparison. A second table splits each of
Reprise's speedups into its two factors (Parallel.measuringWork): the share of the threads' time
they worked (the rest is the calling thread's waits at the ends of jobs and the workers' idle time
while it runs code of its own), and how much longer the same work took in all on more threads,
which is the host's: speedup = threads / compared threads x the ratio of the worked shares / work ratio
(one thread works all its time). Each set starts with the round trip
of a cache line between the two cores (`reprise bench --kernel roundtrip`), which tells whether the
host placed them on one die (about 60-130 ns) or on two (330-530 ns; docs/performance.md#two-dies).
PyTorch's interpreter is found as Scripts/compare.py finds it (PYTHON, then this one, then python3);
without one that has torch, only Reprise's and the product's columns are filled.
"""
import argparse, json, os, statistics, subprocess, sys
from compare import round_trip, torch_python

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOL = os.path.join(ROOT, ".build", "release", "reprise")
ANCHOR = os.path.join(ROOT, "..", "shared", "anchors", "torch_densenet.py")


def json_line(command):
    """Runs `command` and returns the last line of its output that parses as a JSON object."""
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"{' '.join(command)} printed no JSON:\n{result.stdout[-2000:]}")


def reprise(arguments, threads, compare):
    """Reprise's speedup, and the share of the threads' time they worked and the work's ratio."""
    d = json_line([TOOL, "bench", *arguments, "--threads", str(threads), "--compare-threads", str(compare), "--json"])
    return d["speedup"], (d["busyFraction"], d["compareBusyFraction"], d["busyTimeRatio"])


def torch_resnet20(python, threads, compare):
    d = json_line([python, os.path.join(HERE, "torch_models.py"), "resnet20", "standard", "128", "0", "10",
                   str(threads), str(compare)])
    return d["speedup"]


def torch_densenet(python, threads, compare, runs=2):
    """The anchor's median step on `threads` against `compare`, from runs alternating between them."""
    steps = {threads: [], compare: []}
    for _ in range(runs):
        for count in (threads, compare):
            d = json_line([python, ANCHOR, "100", "12", "64", "0", "4", str(count)])
            steps[count].append(d["step_s_median"])
    return statistics.median(steps[compare]) / statistics.median(steps[threads])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare-threads", type=int, default=1)
    args = parser.parse_args()
    if args.sets < 1:
        parser.error(f"--sets must be at least 1, got {args.sets}")
    if not os.path.exists(TOOL):
        sys.exit(f"{TOOL} is missing: run `swift build -c release --product reprise` first")
    os.chdir(ROOT)  # compare.py's helpers run the tool from the repository's root
    python = torch_python()
    torch = python is not None
    if not torch:
        print("no interpreter with torch (PYTHON, this one, python3): PyTorch's columns stay empty", file=sys.stderr)
    t, c = args.threads, args.compare_threads
    columns = ["round trip", "Reprise ResNet-20", "PyTorch ResNet-20", "matmul 2048", "Reprise DenseNet-BC-100", "PyTorch DenseNet-BC-100"]
    rows, factors = [], []
    print(f"speedup of {t} threads over {c}, sets in order")
    print("| set | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for s in range(args.sets):
        trip = round_trip()
        resnet, resnet_factors = reprise(["--model", "resnet20", "--batch-size", "128", "--steps", "20"], t, c)
        torch_resnet = torch_resnet20(python, t, c) if torch else None
        product, product_factors = reprise(["--kernel", "matmul", "--size", "2048", "--steps", "10"], t, c)
        densenet, densenet_factors = reprise(["--model", "densenet-bc", "--depth", "100", "--batch-size", "64", "--steps", "8"], t, c)
        row = [resnet, torch_resnet, product, densenet, torch_densenet(python, t, c) if torch else None]
        rows.append(row)
        factors.append([resnet_factors, product_factors, densenet_factors])
        print(f"| {s + 1} | {trip:.0f} ns | " + " | ".join(speedup(v) for v in row) + " |", flush=True)
    medians = [statistics.median([r[i] for r in rows]) if rows[0][i] is not None else None for i in range(len(columns) - 1)]
    print("| median | | " + " | ".join(speedup(v) for v in medians) + " |")
    print(f"\nReprise's speedups in factors: the share of {t} threads' time they worked"
          + (f" (of {c} threads' in brackets)" if c > 1 else "")
          + f", and how much longer the same work took in all on {t} threads than on {c}")
    print("| set | ResNet-20 | matmul 2048 | DenseNet-BC-100 |")
    print("|---|---|---|---|")
    for s, row in enumerate(factors):
        print(f"| {s + 1} | " + " | ".join(factor_cell(*f, c) for f in row) + " |")
    print("| median | " + " | ".join(factor_cell(*(statistics.median(r[i][k] for r in factors) for k in range(3)), c)
                                    for i in range(3)) + " |")


def factor_cell(busy, compare_busy, ratio, compare):
    worked = f"{100 * busy:.1f}%" + (f" ({100 * compare_busy:.1f}%)" if compare > 1 else "")
    return f"{worked}, {ratio:.2f}x"


def speedup(value):
    return "" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
