#!/usr/bin/env python3
"""Runs the `reprise` tool on hostile and broken inputs and checks that each one ends with a clear
error: a non-zero exit status (no signal), one line on standard error starting with `reprise: `,
within a time limit, and no output file written.

Usage: python3 Scripts/hostile-inputs.py [--binary .build/release/reprise]
Prints one line per case and a closing 'N passed, N failed' line; exits 1 if any case failed.
"""
import argparse, gzip, json, os, struct, subprocess, sys, tempfile


def safetensors(path, tensors, metadata=None, header_override=None, raw_header=None):
    """Writes a safetensors file; tensors maps name -> (dtype, shape, bytes)."""
    header, data, offset = {}, b"", 0
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(payload)]}
        data += payload
        offset += len(payload)
    if metadata:
        header["__metadata__"] = metadata
    if header_override:
        header_override(header)
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    return path


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def i64(values):
    return struct.pack("<%dq" % len(values), *values)


def idx(shape, payload):
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + payload


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/reprise")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    work = tempfile.mkdtemp(prefix="reprise-hostile-")
    os.chdir(work)
    small = ["--depth", "10", "--threads", "1"]

    # A valid tiny data set, model state and training checkpoint to derive hostile files from.
    images = f32([((i * 37) % 11) / 11.0 for i in range(8 * 64)])
    safetensors("data.safetensors", {"images": ("F32", [8, 1, 8, 8], images), "labels": ("I64", [8], i64([i % 2 for i in range(8)]))})
    ok = subprocess.run([binary, "train", "--dataset", "data.safetensors", "--batch-size", "4", "--max-steps", "1",
                         "--save", "model.safetensors", "--checkpoint", "run.safetensors"] + small, capture_output=True)
    if ok.returncode != 0:
        sys.exit("the valid run failed: " + ok.stderr.decode())
    safetensors("input.safetensors", {"input": ("F32", [1, 1, 8, 8], f32([0.5] * 64))})
    def split(path):
        """A safetensors file's bytes, header length and parsed header."""
        content = open(path, "rb").read()
        length = struct.unpack("<Q", content[:8])[0]
        return content, length, json.loads(content[8:8 + length])

    def variant(source, name, change):
        """Writes `source` to `name` with its header changed by `change` (the data kept as it is)."""
        content, length, h = split(source)
        change(h)
        text = json.dumps(h).encode()
        open(name, "wb").write(struct.pack("<Q", len(text)) + text + content[8 + length:])

    model, header_length, header = split("model.safetensors")
    key = "features.norm5.num_batches_tracked"
    weight = "features.conv0.weight"
    variant("model.safetensors", "overflow.safetensors", lambda h: h[weight].__setitem__("shape", [2**62, 2**62]))
    counter = bytearray(model)  # num_batches_tracked = Int64.max
    begin = header[key]["data_offsets"][0]
    counter[8 + header_length + begin:8 + header_length + begin + 8] = i64([2**63 - 1])
    open("counter.safetensors", "wb").write(bytes(counter))
    variant("model.safetensors", "relabelled.safetensors", lambda h: h[weight].__setitem__("dtype", "I32"))
    with open("short.safetensors", "wb") as f:  # header length one byte short
        f.write(struct.pack("<Q", header_length - 1) + model[8:])
    def overlap(h):
        h["features.norm5.bias"]["data_offsets"] = list(h["features.norm5.weight"]["data_offsets"])
    variant("model.safetensors", "overlap.safetensors", overlap)
    dup = model[8:8 + header_length].decode().replace("{", '{"classifier.bias": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, ', 1)
    with open("duplicate.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(dup)) + dup.encode() + model[8 + header_length:])
    nan_model = bytearray(model)
    begin = header[weight]["data_offsets"][0]
    nan_model[8 + header_length + begin:8 + header_length + begin + 4] = struct.pack("<f", float("nan"))
    open("nan.safetensors", "wb").write(bytes(nan_model))

    # Architecture records (pruned and plain networks describe themselves in the metadata).
    pruned = subprocess.run([binary, "prune", "--weights", "model.safetensors", "--ratio", "0.3", "--output", "pruned.safetensors"], capture_output=True)
    if pruned.returncode != 0:
        sys.exit("the valid prune failed: " + pruned.stderr.decode())
    record_key = "reprise.architecture"
    def record(source, name, change):
        def edit(h):
            architecture = json.loads(h["__metadata__"][record_key])
            change(architecture["configuration"])
            h["__metadata__"][record_key] = json.dumps(architecture)
        variant(source, name, edit)
    variant("model.safetensors", "record-not-json.safetensors", lambda h: h["__metadata__"].__setitem__(record_key, "{\"family\": "))
    variant("model.safetensors", "record-family.safetensors", lambda h: h["__metadata__"].__setitem__(record_key, '{"family": "vgg", "configuration": {}}'))
    record("model.safetensors", "record-huge.safetensors", lambda c: c.update(growthRate=4096, blocks=[1000, 1000, 1000]))
    record("model.safetensors", "record-negative.safetensors", lambda c: c.update(growthRate=-12))
    record("pruned.safetensors", "record-selection-range.safetensors", lambda c: c["pruning"]["final"].append(10**6))
    record("pruned.safetensors", "record-selection-order.safetensors", lambda c: c["pruning"]["final"].reverse())
    record("pruned.safetensors", "record-selection-count.safetensors", lambda c: c["pruning"]["layers"].pop())

    checkpoint_header = split("run.safetensors")[2]
    checkpoint_variant = lambda name, change: variant("run.safetensors", name, change)
    checkpoint_variant("negative-step.safetensors", lambda h: h["__metadata__"].__setitem__("step", "-5"))
    momentum = next(k for k in checkpoint_header if k.startswith("optimizer."))
    def wrong_dtype(h):
        h[momentum]["dtype"] = "I32"
    checkpoint_variant("optimizer-dtype.safetensors", wrong_dtype)

    safetensors("label-huge.safetensors", {"images": ("F32", [2, 1, 8, 8], f32([0.1] * 128)), "labels": ("I64", [2], i64([0, 2**63 - 1]))})
    safetensors("label-2-40.safetensors", {"images": ("F32", [2, 1, 8, 8], f32([0.1] * 128)), "labels": ("I64", [2], i64([0, 2**40]))})
    safetensors("label-classes.safetensors", {"images": ("F32", [2, 1, 8, 8], f32([0.1] * 128)), "labels": ("I64", [2], i64([0, 5]))})
    safetensors("tiny-images.safetensors", {"images": ("F32", [2, 1, 2, 2], f32([0.1] * 8)), "labels": ("I64", [2], i64([0, 1]))})
    safetensors("inf-images.safetensors", {"images": ("F32", [2, 1, 8, 8], f32([float("inf")] * 128)), "labels": ("I64", [2], i64([0, 1]))})
    safetensors("empty.safetensors", {"images": ("F32", [0, 1, 8, 8], b""), "labels": ("I64", [0], b"")})
    safetensors("input-overflow.safetensors", {"input": ("F32", [1, 1, 8, 8], f32([0.5] * 64))},
                header_override=lambda h: h["input"].__setitem__("shape", [2**31, 2**31, 2**31, 1]))
    safetensors("input-nan.safetensors", {"input": ("F32", [1, 1, 8, 8], f32([float("nan")] * 64))})

    os.makedirs("idx-overflow")
    open("idx-overflow/train-images-idx3-ubyte", "wb").write(idx([2**31, 2**31, 2**31], b""))
    open("idx-overflow/train-labels-idx1-ubyte", "wb").write(idx([1], b"\0"))
    os.makedirs("bomb")
    with gzip.open("bomb/train-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx([1, 28, 28], b""))
        chunk = b"\0" * (1 << 20)
        for _ in range(2048):  # 2 GiB of zeros behind a header that declares 784 bytes
            f.write(chunk)
    open("bomb/train-labels-idx1-ubyte", "wb").write(idx([1], b"\0"))
    os.makedirs("a-directory")

    train = ["train", "--batch-size", "4"] + small
    cases = [
        ("shape overflow, --weights", ["eval", "--dataset", "data.safetensors", "--weights", "overflow.safetensors"] + small),
        ("shape overflow, --init-weights", train + ["--dataset", "data.safetensors", "--init-weights", "overflow.safetensors"]),
        ("shape overflow, --resume", train + ["--dataset", "data.safetensors", "--resume", "overflow.safetensors"]),
        ("shape overflow, --dataset", train + ["--dataset", "overflow.safetensors"]),
        ("shape overflow, --input", ["predict", "--weights", "model.safetensors", "--input", "input-overflow.safetensors", "--output", "out.safetensors"] + small),
        ("num_batches_tracked Int64.max", ["eval", "--dataset", "data.safetensors", "--weights", "counter.safetensors"] + small),
        ("checkpoint step negative", train + ["--dataset", "data.safetensors", "--resume", "negative-step.safetensors"]),
        ("optimiser state of another dtype", train + ["--dataset", "data.safetensors", "--resume", "optimizer-dtype.safetensors"]),
        ("label 2^63-1", train + ["--dataset", "label-huge.safetensors"]),
        ("label 2^40", train + ["--dataset", "label-2-40.safetensors"]),
        ("label at --classes", train + ["--dataset", "label-classes.safetensors", "--classes", "5"]),
        ("2x2 images to DenseNet", train + ["--dataset", "tiny-images.safetensors"]),
        ("IDX dimensions overflow", train + ["--dataset", "fashion-mnist", "--data-dir", "idx-overflow"]),
        ("gzip bomb", train + ["--dataset", "fashion-mnist", "--data-dir", "bomb"]),
        ("--batch-size 2^63-1", ["train", "--batch-size", "9223372036854775807"]),
        ("--init-channels 0", ["train", "--init-channels", "0"]),
        ("--compression 0.01", ["train", "--compression", "0.01"]),
        ("predict --threads 0", ["predict", "--threads", "0", "--weights", "model.safetensors", "--input", "input.safetensors", "--output", "o.safetensors"]),
        ("--threads 1000", ["bench", "--threads", "1000"]),
        ("header length one byte short", ["eval", "--dataset", "data.safetensors", "--weights", "short.safetensors"] + small),
        ("overlapping data_offsets", ["eval", "--dataset", "data.safetensors", "--weights", "overlap.safetensors"] + small),
        ("duplicate keys", ["eval", "--dataset", "data.safetensors", "--weights", "duplicate.safetensors"] + small),
        ("F32 relabelled I32", ["eval", "--dataset", "data.safetensors", "--weights", "relabelled.safetensors"] + small),
        ("NaN weights", ["eval", "--dataset", "data.safetensors", "--weights", "nan.safetensors"] + small),
        ("infinite images", train + ["--dataset", "inf-images.safetensors"]),
        ("NaN predict input", ["predict", "--weights", "model.safetensors", "--input", "input-nan.safetensors", "--output", "o.safetensors"] + small),
        ("--lr inf", train + ["--dataset", "data.safetensors", "--lr", "inf"]),
        ("--weight-decay nan", train + ["--dataset", "data.safetensors", "--weight-decay", "nan"]),
        ("empty data set", train + ["--dataset", "empty.safetensors"]),
        ("--resume with another seed", train + ["--dataset", "data.safetensors", "--resume", "run.safetensors", "--seed", "5"]),
        ("--resume with another batch size", ["train", "--batch-size", "2"] + small + ["--dataset", "data.safetensors", "--resume", "run.safetensors"]),
        ("--resume with other epochs", train + ["--dataset", "data.safetensors", "--resume", "run.safetensors", "--epochs", "3"]),
        ("--resume with another lr", train + ["--dataset", "data.safetensors", "--resume", "run.safetensors", "--lr", "0.05"]),
        ("--blocks-per-stage 0", ["train", "--model", "seqresnet", "--blocks-per-stage", "0"]),
        ("--save in a missing directory", train + ["--dataset", "data.safetensors", "--save", "missing/m.safetensors"]),
        ("--checkpoint that is a directory", train + ["--dataset", "data.safetensors", "--checkpoint", "a-directory"]),
        ("--log in a missing directory", train + ["--dataset", "data.safetensors", "--log", "missing/log.jsonl"]),
        ("diverging training", train + ["--dataset", "data.safetensors", "--lr", "1e30", "--save", "diverged.safetensors"]),
        ("architecture record not JSON", ["eval", "--dataset", "data.safetensors", "--weights", "record-not-json.safetensors"] + small),
        ("architecture record of an unknown family", ["summary", "--weights", "record-family.safetensors"]),
        ("architecture record larger than its file", ["eval", "--dataset", "data.safetensors", "--weights", "record-huge.safetensors"] + small),
        ("architecture record, negative growth rate", ["bench", "--weights", "record-negative.safetensors"] + small),
        ("pruned record, channel out of range", ["eval", "--dataset", "data.safetensors", "--weights", "record-selection-range.safetensors"] + small),
        ("pruned record, channels out of order", ["predict", "--weights", "record-selection-order.safetensors", "--input", "input.safetensors", "--output", "o.safetensors"] + small),
        ("pruned record, a block missing", train + ["--dataset", "data.safetensors", "--init-weights", "record-selection-count.safetensors"]),
        ("prune a bad record", ["prune", "--weights", "record-selection-range.safetensors", "--ratio", "0.5", "--output", "o.safetensors"]),
        ("prune --ratio 1", ["prune", "--weights", "model.safetensors", "--ratio", "1", "--output", "o.safetensors"]),
    ]
    passed = failed = 0
    for name, arguments in cases:
        before = set(os.listdir("."))
        try:
            run = subprocess.run([binary] + arguments, capture_output=True, timeout=args.timeout)
            status, err = run.returncode, run.stderr.decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            status, err = None, "timed out"
        created = sorted(set(os.listdir(".")) - before)
        good = status is not None and 0 < status < 128 and err.startswith("reprise: ") and "\n" not in err and not created
        passed, failed = passed + good, failed + (not good)
        print(f"{'ok  ' if good else 'FAIL'} {name}: exit {status}, {err[:160]}" + (f", created {created}" if created else ""))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
