#!/usr/bin/env python3
"""PyTorch's torch.utils.checkpoint.checkpoint_sequential on the models of docs/time-vs-memory.svg:
CIFAR DenseNet-BC-100 (k=12; ../shared/anchors/torch_densenet.py) and the CIFAR "ResNet-50"
(BasicBlock, n = 8, standard convolutions; Scripts/torch_models.py), as a sequence of units
(DenseNet: conv0, the features' modules, the head; ResNet: the stem, the 24 blocks, the head),
in SEGMENTS segments (0: no checkpointing). One SGD step per step (Nesterov momentum 0.9, weight
decay 1e-4) on a random batch of 3x32x32 images.

Usage: python torch-checkpoint-sequential.py densenet|resnet50 SEGMENTS BATCH STEPS [THREADS]
       python torch-checkpoint-sequential.py --sweep [--csv docs/time-vs-memory-torch.csv]
Prints one JSON line per run: median and min step seconds, peak RSS in bytes (one process per run)."""
import json, os, resource, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))


def units(name):
    import torch.nn as nn, torch.nn.functional as F
    class Head(nn.Module):
        def __init__(self, fc):
            super().__init__(); self.fc = fc
        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
    if name == "densenet":
        sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "anchors"))
        from torch_densenet import DenseNetBC
        m = DenseNetBC(100, 12)
        return nn.Sequential(m.conv0, *m.features, Head(m.fc))
    sys.path.insert(0, HERE)
    from torch_models import ResNet
    m = ResNet("standard", 8, False)
    return nn.Sequential(m.stem, *m.blocks, Head(m.fc))


def run(name, segments, batch, steps, threads):
    import torch, torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint_sequential
    if threads: torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = units(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, requires_grad=segments > 0); y = torch.randint(0, 10, (batch,))
    times = []
    for s in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = checkpoint_sequential(model, segments, x, use_reentrant=False) if segments else model(x)
        F.cross_entropy(out, y).backward(); opt.step()
        if s: times.append(time.perf_counter() - t)
    times.sort()
    return {"model": name, "segments": segments, "batch": batch, "threads": torch.get_num_threads(),
            "stepSecondsMedian": times[len(times) // 2], "stepSecondsMin": times[0],
            "peakResidentBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def sweep(csv_path):
    import csv
    rows = []
    for name in ["densenet", "resnet50"]:
        for segments in [0, 2, 4, 8]:
            out = subprocess.run([sys.executable, __file__, name, str(segments), "64", "5", "2"], check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sweep"]:
        sweep(sys.argv[3] if len(sys.argv) > 3 else os.path.join(HERE, "..", "docs", "time-vs-memory-torch.csv"))
    else:
        name, segments, batch, steps = sys.argv[1], *map(int, sys.argv[2:5])
        print(json.dumps(run(name, segments, batch, steps, int(sys.argv[5]) if len(sys.argv) > 5 else 0)))
