"""One SGD step of DenseNet-BC in PyTorch and in Reprise from the same weights on the same batch,
measured against PyTorch's step in float64 (taken as exact): per tensor (weights and running
statistics), max |change - exact change| / max |exact change|, of PyTorch in float32 and of Reprise
in float32 and float64, plain and memory-efficient; prints the worst tensor, the fifth worst and the
median of each.

Also prints how many ReLU inputs of PyTorch's float32 forward pass have another sign than in float64:
each such flip moves a whole term into or out of a gradient sum, and one or two of them decide the
worst tensor's error (docs/numerics.md).

Usage: python Scripts/compare-torch-step.py [DEPTH] [GROWTH] [BATCH] [SEED]   (needs torch and safetensors;
run from the repository root after `swift build -c release`). Never part of CI."""
import json, math, os, subprocess, sys, tempfile
import torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file, load_file

class DenseLayer(nn.Module):
    def __init__(self, cin, k):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin); self.conv1 = nn.Conv2d(cin, 4 * k, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * k); self.conv2 = nn.Conv2d(4 * k, k, 3, padding=1, bias=False)
    def forward(self, x):
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))

class DenseBlock(nn.Module):
    def __init__(self, n, cin, k):
        super().__init__()
        for i in range(n): self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * k, k))
    def forward(self, x):
        for layer in self.children(): x = torch.cat([x, layer(x)], 1)
        return x

class Transition(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin); self.conv = nn.Conv2d(cin, cout, 1, bias=False)
    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2)

class DenseNetBC(nn.Module):
    """torchvision's module names with the CIFAR stem, as Reprise's densenet-bc."""
    def __init__(self, depth, k, classes=10, channels=3):
        super().__init__()
        n, c = (depth - 4) // 6, 2 * k
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(channels, c, 3, padding=1, bias=False))
        for b in range(3):
            self.features.add_module(f"denseblock{b + 1}", DenseBlock(n, c, k)); c += n * k
            if b < 2:
                self.features.add_module(f"transition{b + 1}", Transition(c, c // 2)); c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, classes)
    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1))

def main():
    depth, k, batch, seed = (int(a) for a in (sys.argv[1:5] + ["40", "12", "16", "0"][len(sys.argv) - 1:]))
    torch.manual_seed(seed); torch.set_num_threads(2)
    model = DenseNetBC(depth, k).double()
    for m in model.modules():  # non-trivial BN parameters and statistics
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5); nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.8, 1.2)
    model = model.float()
    images = torch.randn(batch, 3, 32, 32); labels = torch.randint(0, 10, (batch,))
    work = tempfile.mkdtemp()
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    save_file(initial, f"{work}/initial.safetensors")
    save_file({"images": images, "labels": labels}, f"{work}/batch.safetensors")
    relu = F.relu
    def step(m, x, signs):
        # Records the sign of every ReLU input of the forward pass: where float32 and float64
        # disagree, a whole term enters or leaves a gradient sum, whatever the arithmetic's accuracy.
        def recording(v, *args, **kwargs):
            signs.append((v.detach() > 0).flatten())
            return relu(v, *args, **kwargs)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        m.train(); opt.zero_grad()
        F.relu = recording
        try: loss = F.cross_entropy(m(x), labels)
        finally: F.relu = relu
        loss.backward(); opt.step()
        return m.state_dict()
    exact = DenseNetBC(depth, k).double(); exact.load_state_dict({key: v.double() if v.is_floating_point() else v for key, v in initial.items()})
    signs64, signs32 = [], []
    reference = step(exact, images.double(), signs64)
    expected = step(model, images, signs32)
    flips = sum(int((a != b).sum()) for a, b in zip(signs32, signs64))

    def errors(got):
        """Per tensor: max |change - exact change| / max |exact change| of the step's change."""
        result = {}
        for key, value in reference.items():
            if key.endswith("num_batches_tracked"):
                assert int(got[key]) == int(value), key
                continue
            start = initial[key].double()
            exact, change = value.double() - start, got[key].double() - start
            result[key] = ((change - exact).abs().max() / exact.abs().max().clamp_min(1e-30)).item()
        return result
    def describe(name, result):
        ranked = sorted(result.items(), key=lambda kv: -kv[1])
        return {f"{name}Worst": ranked[0][1], f"{name}WorstTensor": ranked[0][0], f"{name}Fifth": ranked[4][1],
                f"{name}Median": ranked[len(ranked) // 2][1]}
    summary = {"depth": depth, "k": k, "batch": batch, "seed": seed, "torch": torch.__version__,
               "reluInputs": sum(len(a) for a in signs32), "torch32ReluSignFlips": flips}
    summary.update(describe("torch32", errors(expected)))
    for dtype in ("float32", "float64"):
        for efficient in (False, True):
            out = f"{work}/reprise-{dtype}-{efficient}.safetensors"
            subprocess.run([".build/release/reprise", "train", "--model", "densenet-bc", "--depth", str(depth),
                "--growth-rate", str(k), "--classes", "10", "--dataset", f"{work}/batch.safetensors",
                "--init-weights", f"{work}/initial.safetensors", "--batch-size", str(batch), "--max-steps", "1",
                "--lr", "0.1", "--momentum", "0.9", "--weight-decay", "1e-4", "--schedule", "constant",
                "--no-shuffle", "--no-augment", "--threads", "2", "--save", out, "--dtype", dtype,
                "--memory-efficient" if efficient else "--no-memory-efficient"], check=True, stdout=subprocess.DEVNULL)
            summary.update(describe(f"reprise{dtype[-2:]}{'Efficient' if efficient else 'Plain'}", errors(load_file(out))))
    print(json.dumps(summary, indent=1))

if __name__ == "__main__":
    main()
