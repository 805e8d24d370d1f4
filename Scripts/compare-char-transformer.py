#!/usr/bin/env python3
"""The char-transformer training step, Reprise against PyTorch, in alternating rounds (never in CI).

Usage (after `swift build -c release --product char-transformer`):
  PYTHON=/path/to/python-with-torch python3 Scripts/compare-char-transformer.py [--rounds 3] [--steps 20]
The Reprise example averages its steps after the first, as the PyTorch script does.
Prints each run's mean step time and peak RSS, then the medians and the time ratio.
"""
import argparse, os, re, statistics, subprocess, sys


def run(command):
    """Runs `command`; returns its output and its own peak resident set size in MiB."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        sys.exit(f"{command[0]} failed:\n{output}")
    return output, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    python = os.environ.get("PYTHON", "python3")
    times = {"reprise": [], "torch": []}
    memory = {"reprise": [], "torch": []}
    for round in range(args.rounds):
        for name in ["reprise", "torch"]:
            if name == "reprise":
                command = [".build/release/char-transformer", "--steps", str(args.steps + 1), "--threads", str(args.threads)]
                pattern = r"\(([0-9.]+) s a training step\)"
            else:
                command = [python, "Scripts/torch_char_transformer.py", "--steps", str(args.steps), "--threads", str(args.threads)]
                pattern = r"([0-9.]+) s a training step"
            output, rss = run(command)
            seconds = float(re.search(pattern, output).group(1))
            times[name].append(seconds)
            memory[name].append(rss)
            print(f"round {round + 1} {name}: {seconds:.4f} s a step, peak RSS {rss:.0f} MiB", flush=True)
    r, t = statistics.median(times["reprise"]), statistics.median(times["torch"])
    print(f"median step: Reprise {r:.4f} s, PyTorch {t:.4f} s, ratio {r / t:.2f}x; "
          f"peak RSS: Reprise {statistics.median(memory['reprise']):.0f} MiB, PyTorch {statistics.median(memory['torch']):.0f} MiB")


if __name__ == "__main__":
    main()
