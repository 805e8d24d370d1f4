"""The direct convolution kernels of a git revision against the working tree's, in one process.

    python3 Scripts/kernel-ab.py [--rev REV] [--shape N,C,H,O ...] [--repetitions R] [--avx2]

Builds Sources/CKernels as it is at REV (default HEAD) with every exported name prefixed by old_,
and as it is in the working tree, into one program with Scripts/kernel_ab.c, which calls the two
builds' forward kernel and weight-gradient kernel in turn and prints, per pass, the fastest and the
mean time of each, new/old, and the largest relative difference of their results. The default shapes
are ResNet-20's three 3x3 layers at batch 128. Needs clang (the Swift toolchain has it) and a
processor with AVX2 and FMA; run it on an otherwise idle machine.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = "Sources/CKernels"
FILES = ["ShiftedConvolution.c", "WeightGradient.c", "Depthwise.c", "RowKernels.c"]
DEFAULT_SHAPES = ["128,16,32,16", "128,32,16,32", "128,64,8,64"]


def exported_names(header):
    """The functions CKernels.h declares: every name the old build must not share with the new."""
    return sorted(set(re.findall(r"^\s*(?:bool|void|long|float)\s+\**(reprise_\w+)\s*\(", header, re.M)))


def run(command, **kwargs):
    result = subprocess.run(command, **kwargs)
    if result.returncode != 0:
        sys.exit(f"kernel-ab: {' '.join(command[:2])}... failed with status {result.returncode}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="the revision whose kernels are 'old' (default HEAD)")
    parser.add_argument("--shape", action="append", help="N,C,H,O: batch, channels, height (= width), outputs")
    parser.add_argument("--repetitions", type=int, default=21, help="calls of each build per pass (default 21)")
    parser.add_argument("--avx2", action="store_true", help="run the AVX2 tiles instead of the AVX-512 ones")
    args = parser.parse_args()
    shapes = args.shape or DEFAULT_SHAPES
    for shape in shapes:
        if not re.fullmatch(r"\d+,\d+,\d+,\d+", shape):
            sys.exit(f"kernel-ab: --shape must be N,C,H,O (four positive integers), got '{shape}'")
    if args.repetitions < 1:
        sys.exit("kernel-ab: --repetitions must be at least 1")

    with tempfile.TemporaryDirectory() as work:
        old = os.path.join(work, "old")
        os.makedirs(os.path.join(old, "include"))
        for name in FILES + ["include/CKernels.h"]:
            text = run(["git", "-C", ROOT, "show", f"{args.rev}:{KERNELS}/{name}"], capture_output=True, text=True).stdout
            with open(os.path.join(old, name), "w") as f:
                f.write(text)
        with open(os.path.join(old, "include/CKernels.h")) as f:
            renames = [f"-D{name}=old_{name}" for name in exported_names(f.read())]
        flags = ["clang", "-O2", "-std=c11", "-c"]
        objects = []
        for name in FILES:
            target = os.path.join(work, "old_" + name.replace(".c", ".o"))
            run(flags + renames + ["-I", os.path.join(old, "include"), os.path.join(old, name), "-o", target])
            objects.append(target)
            target = os.path.join(work, "new_" + name.replace(".c", ".o"))
            run(flags + ["-I", os.path.join(ROOT, KERNELS, "include"), os.path.join(ROOT, KERNELS, name), "-o", target])
            objects.append(target)
        program = os.path.join(work, "kernel_ab")
        run(["clang", "-O2", "-std=c11", "-I", os.path.join(ROOT, KERNELS, "include"),
             os.path.join(ROOT, "Scripts/kernel_ab.c")] + objects + ["-lm", "-o", program])
        print(f"old: {KERNELS} at {args.rev}; new: the working tree; {'AVX2' if args.avx2 else 'widest'} tiles")
        for shape in shapes:
            run([program] + shape.split(",") + [str(args.repetitions)] + (["avx2"] if args.avx2 else []))


if __name__ == "__main__":
    main()
