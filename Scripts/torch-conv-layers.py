"""PyTorch's time for single 3x3 convolution layers, the counterpart of `reprise bench --kernel conv2d`.

    python3 Scripts/torch-conv-layers.py [--threads T] [--repetitions R] [--layer N,C,H,O,S ...]

For each layer (batch N, C input channels of H x H, O outputs, stride S, padding 1, no bias) prints
the median forward time and the median time of the backward pass that computes both gradients, with
GFLOP/s counted as Reprise counts them (2 per multiply-add of the convolution, twice that for the
two gradients). The default layers are ResNet-20's at batch 128 and ShakeNet-26 2x96d's at batch 32.
"""

import argparse
import statistics
import sys
import time

DEFAULT_LAYERS = [
    "128,16,32,16,1", "128,32,16,32,1", "128,64,8,64,1", "128,16,32,32,2", "128,32,16,64,2",
    "32,96,32,96,1", "32,192,16,192,1", "32,384,8,384,1",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--layer", action="append", help="N,C,H,O,S")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("torch-conv-layers: needs torch (run it with an interpreter that has it)")
    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__}, {args.threads} threads, median of {args.repetitions}")
    for layer in args.layer or DEFAULT_LAYERS:
        try:
            n, c, h, o, s = (int(v) for v in layer.split(","))
        except ValueError:
            sys.exit(f"torch-conv-layers: --layer must be N,C,H,O,S, got '{layer}'")
        x = torch.randn(n, c, h, h, requires_grad=True)
        conv = torch.nn.Conv2d(c, o, 3, s, 1, bias=False)
        y = conv(x)
        dy = torch.randn_like(y)
        flops = 2 * n * o * c * 9 * y.shape[2] * y.shape[3]
        forward, backward = [], []
        for _ in range(args.repetitions):
            start = time.perf_counter()
            y = conv(x)
            middle = time.perf_counter()
            y.backward(dy)
            forward.append(middle - start)
            backward.append(time.perf_counter() - middle)
        f, b = statistics.median(forward), statistics.median(backward)
        print(f"  {n},{c},{h},{h} -> {o}, stride {s}: forward {f * 1e3:7.2f} ms {flops / f / 1e9:6.1f} GFLOP/s, "
              f"both gradients {b * 1e3:7.2f} ms {2 * flops / b / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
