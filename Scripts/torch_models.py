"""PyTorch transcriptions of Reprise's other benchmark models, for Scripts/compare.py --model:
SeqResNet(k, r, N) for CIFAR (Huang et al. 2019; reference/MODELS.md 2, the structure of the official
code: the window re-made by one torch.cat per filter, F.dropout2d per window, checkpoint per filter in the
memory-efficient form), and ResNet-20, SE-ResNet-56, ShakeNet-26-2x96d and MobileNetV2 with the Multiception
paper's convolution variants (MODELS.md 3).
Written from the specification, structure for structure with Sources/Models; parameter counts are
printed so the caller can check them against `reprise bench`.

Usage: python torch_models.py seqresnet K R N BATCH EFFICIENT(0/1) STEPS [THREADS [COMPARE_THREADS]]
       python torch_models.py resnet20|seresnet56|shakenet26-2x96d|mobilenetv2 CONV BATCH EFFICIENT(0/1) STEPS [THREADS [COMPARE_THREADS]]
Prints one JSON line (the keys of ../shared/anchors/torch_densenet.py): params, median step seconds,
peak RSS MiB; and macs, the multiply-accumulates of one image as `reprise summary` counts them. With
COMPARE_THREADS, as many steps on that many threads take turns with those on THREADS, as `reprise
bench --compare-threads` takes them, and the line adds their median and the speedup. One SGD step
(Nesterov momentum 0.9, weight decay 1e-4) on random 3x32x32 images per step."""
import json, resource, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
import torch.utils.checkpoint as cp


class ConvUnit(nn.Module):
    """conv (no bias, padding (size - 1) / 2), BN, ReLU; returns the raw and the activated map."""
    def __init__(self, cin, cout, size, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, size, stride, (size - 1) // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(cout)
    def forward(self, x):
        raw = self.conv(x)
        return raw, F.relu(self.norm(raw))


class SeqConv(nn.Module):
    """Filters of k channels; filter i reads all channels so far (dense) or the last `cin` (windowed)."""
    def __init__(self, cin, cout, k, windowed, drop, zero, efficient):
        super().__init__()
        count = cout // k
        self.convs = nn.ModuleList(nn.Conv2d(cin if windowed else cin + i * k, k, 3, 1, 1, bias=False) for i in range(count))
        self.norms = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(count))
        if zero:
            for c in self.convs: nn.init.zeros_(c.weight)
        self.cin, self.k, self.windowed, self.drop, self.efficient = cin, k, windowed, drop, efficient
    def filter(self, i, window, shortcut):
        if self.drop > 0: window = F.dropout2d(window, self.drop, self.training)
        raw = self.convs[i](window)
        if shortcut is not None: raw = raw + shortcut
        return raw, F.relu(self.norms[i](raw))
    def forward(self, x, shortcut=None):
        # As the official code: the window is one tensor, re-made by one torch.cat per filter.
        view, raws, acts = x, [], []
        shortcuts = shortcut.split(self.k, 1) if shortcut is not None else [None] * len(self.convs)
        for i in range(len(self.convs)):
            if self.efficient:
                raw, act = cp.checkpoint(self.filter, i, view, shortcuts[i], use_reentrant=False)
            else:
                raw, act = self.filter(i, view, shortcuts[i])
            raws.append(raw); acts.append(act)
            view = torch.cat([view[:, self.k:] if self.windowed else view, act], 1)
        return torch.cat(raws, 1), torch.cat(acts, 1)


class SeqResNet(nn.Module):
    def __init__(self, k, r, n, efficient, classes=10):
        super().__init__()
        widths = [16 * r, 32 * r, 48 * r]
        self.stem = ConvUnit(3, 16, 3)
        self.head = SeqConv(16, widths[0], k, False, 0, False, efficient)
        self.extensions, self.shrinks, self.blocks = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for s, w in enumerate(widths):
            if s > 0:
                self.extensions.append(SeqConv(widths[s - 1], w - widths[s - 1], k, True, 0.1, False, efficient))
                self.shrinks.append(ConvUnit(w, w, 3, 2, groups=w // k))
            self.blocks.append(nn.ModuleList(
                nn.ModuleList([SeqConv(w, w, k, True, 0.1, False, efficient), SeqConv(w, w, k, True, 0.1, True, efficient)])
                for _ in range(n)))
        self.blender = ConvUnit(widths[-1], widths[-1], 1)
        self.fc = nn.Linear(widths[-1], classes)
    def forward(self, x):
        _, x = self.stem(x)
        raw, act = self.head(x)
        for s in range(3):
            if s > 0:
                raw, act = self.shrinks[s - 1](torch.cat([act, self.extensions[s - 1](act)[1]], 1))
            for layer1, layer2 in self.blocks[s]:
                raw, act = layer2(layer1(act)[1], raw)
        _, x = self.blender(F.dropout2d(act, 0.1, self.training))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def conv(cin, cout, size, stride=1, groups=1, bias=False):
    return nn.Conv2d(cin, cout, size, stride, (size - 1) // 2, groups=groups, bias=bias)


class Variant(nn.Module):
    """The replacement of a block's first conv 3x3 + BN (MODELS.md 3.1)."""
    def __init__(self, kind, cin, cout, stride, kernels):
        super().__init__()
        self.kind = kind
        if kind == "standard":
            self.body = nn.Sequential(conv(cin, cout, 3, stride), nn.BatchNorm2d(cout))
        elif kind == "dsconv":
            self.body = nn.Sequential(conv(cin, cin, 3, stride, groups=cin), conv(cin, cout, 1, bias=True), nn.BatchNorm2d(cout))
        elif kind == "multiception":
            self.depthwise = nn.ModuleList(conv(cin, cin, size, groups=cin) for size in kernels)
            self.body = nn.Sequential(nn.BatchNorm2d(cin * len(kernels)), conv(cin * len(kernels), cout, 1, stride, bias=True),
                                      nn.BatchNorm2d(cout))
        elif kind == "mixconv":
            parts = lambda c: [c - 2 * (c // 3), c // 3, c // 3]
            self.parts = parts(cin)
            self.convs = nn.ModuleList(conv(i, o, size, stride) for i, o, size in zip(parts(cin), parts(cout), [3, 5, 7]))
        else:
            raise SystemExit(f"unknown convolution variant {kind}")
    def forward(self, x):
        if self.kind == "multiception":
            return self.body(torch.cat([d(x) for d in self.depthwise], 1))
        if self.kind == "mixconv":
            return torch.cat([c(p) for c, p in zip(self.convs, x.split(self.parts, 1))], 1)
        return self.body(x)


class BasicBlock(nn.Module):
    def __init__(self, kind, cin, cout, stride, kernels, efficient, reduction=None):
        super().__init__()
        self.conv1 = Variant(kind, cin, cout, stride, kernels)
        self.conv2, self.bn2 = conv(cout, cout, 3), nn.BatchNorm2d(cout)
        self.se = SqueezeExcitation(cout, reduction) if reduction else nn.Identity()
        self.shortcut = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
        self.efficient = efficient
    def body(self, x):
        h = self.se(self.bn2(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(h + (self.shortcut(x) if self.shortcut is not None else x))
    def forward(self, x):
        return cp.checkpoint(self.body, x, use_reentrant=False) if self.efficient else self.body(x)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, reduction):
        super().__init__()
        self.reduce, self.expand = nn.Linear(channels, channels // reduction, bias=False), nn.Linear(channels // reduction, channels, bias=False)
    def forward(self, x):
        s = torch.sigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class ResNet(nn.Module):
    """CIFAR ResNet (MODELS.md 3.3); with reduction, SE-ResNet."""
    def __init__(self, kind, n, efficient, classes=10, reduction=None):
        super().__init__()
        self.stem = nn.Sequential(conv(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU())
        blocks, width = [], 16
        for s, (w, kernels) in enumerate(zip([16, 32, 64], [[3, 5, 7], [3, 5], [3, 3]])):
            for b in range(n):
                blocks.append(BasicBlock(kind, width if b == 0 else w, w, 2 if b == 0 and s > 0 else 1, kernels, efficient, reduction))
            width = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)
    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


class ShakeShake(torch.autograd.Function):
    """alpha a + (1 - alpha) b forward; beta and 1 - beta weigh the gradients."""
    @staticmethod
    def forward(ctx, a, b, alpha, beta):
        ctx.save_for_backward(beta)
        return a * alpha + b * (1 - alpha)
    @staticmethod
    def backward(ctx, g):
        beta, = ctx.saved_tensors
        return g * beta, g * (1 - beta), None, None


class ShakeShortcut(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.conv2, self.bn = conv(cin, cout // 2, 1), conv(cin, cout // 2, 1), nn.BatchNorm2d(cout)
        self.stride = stride
    def forward(self, x):
        x = F.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        sub = lambda v: v[:, :, ::self.stride, ::self.stride]
        return self.bn(torch.cat([self.conv1(sub(x)), self.conv2(sub(shifted))], 1))


class ShakeUnit(nn.Module):
    def __init__(self, kind, cin, cout, stride, kernels, efficient):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.ReLU(), Variant(kind, cin, cout, stride, kernels), nn.ReLU(), conv(cout, cout, 3), nn.BatchNorm2d(cout))
            for _ in range(2))
        self.shortcut = ShakeShortcut(cin, cout, stride) if cin != cout or stride != 1 else None
        self.efficient = efficient
    def body(self, x, alpha, beta):
        mixed = ShakeShake.apply(self.branches[0](x), self.branches[1](x), alpha, beta)
        return mixed + (self.shortcut(x) if self.shortcut is not None else x)
    def forward(self, x):
        n = x.shape[0]
        alpha, beta = torch.rand(n, 1, 1, 1), torch.rand(n, 1, 1, 1)
        return cp.checkpoint(self.body, x, alpha, beta, use_reentrant=False) if self.efficient else self.body(x, alpha, beta)


class ShakeNet(nn.Module):
    """ShakeNet-26-2x96d (MODELS.md 3.3). Memory-efficient as Reprise's hand-made plan: every unit but the
    last stage's checkpointed (docs/checkpointing.md#hand-made-plans)."""
    def __init__(self, kind, efficient, classes=10):
        super().__init__()
        units, width = [nn.Conv2d(3, 16, 3, 1, 1, bias=True)], 16
        for s, (w, kernels) in enumerate(zip([96, 192, 384], [[3, 5, 7], [3, 5], [3, 3]])):
            for u in range(4):
                units.append(ShakeUnit(kind, width if u == 0 else w, w, 2 if u == 0 and s > 0 else 1, kernels, efficient and s < 2))
            width = w
        self.body, self.fc = nn.Sequential(*units), nn.Linear(384, classes)
    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.body(x)), 1).flatten(1))


def conv_bn_relu6(cin, cout, size, stride=1, groups=1):
    return nn.Sequential(conv(cin, cout, size, stride, groups), nn.BatchNorm2d(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion, variant, efficient):
        super().__init__()
        hidden = cin * expansion
        layers = [] if expansion == 1 else [conv_bn_relu6(cin, hidden, 1)]
        if variant:
            kind, kernels = variant
            layers += [Variant(kind, hidden, cout, stride, kernels), nn.ReLU(), nn.BatchNorm2d(cout)]
        else:
            layers += [conv_bn_relu6(hidden, hidden, 3, stride, hidden), conv(hidden, cout, 1), nn.BatchNorm2d(cout)]
        self.conv, self.residual, self.efficient = nn.Sequential(*layers), stride == 1 and cin == cout, efficient
    def body(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)
    def forward(self, x):
        return cp.checkpoint(self.body, x, use_reentrant=False) if self.efficient else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with the first two rows' convolutions replaced by `kind` (MODELS.md 3.3)."""
    def __init__(self, kind, efficient, classes=10):
        super().__init__()
        table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        kernels = [] if kind == "standard" else [[3, 5, 7], [3, 5]]
        layers, width = [conv_bn_relu6(3, 32, 3)], 32
        for row, (t, c, n, s) in enumerate(table):
            for i in range(n):
                variant = (kind, kernels[row]) if row < len(kernels) else None
                layers.append(InvertedResidual(width, c, s if i == 0 else 1, t, variant, efficient))
                width = c
        layers.append(conv_bn_relu6(width, 1280, 1))
        self.features, self.fc = nn.Sequential(*layers), nn.Linear(1280, classes)
    def forward(self, x):
        return self.fc(F.dropout(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1), 0.2, self.training))


def multiply_accumulates(model):
    """The multiply-accumulates of the model's convolutions and linear layers for one 3x32x32 image (as
    `reprise summary` counts them), from one forward pass in eval mode with hooks."""
    total, training = [0], model.training
    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total[0] += module.in_features * module.out_features
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for hook in hooks: hook.remove()
    model.train(training)
    return total[0]


if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    if name == "seqresnet":
        k, r, n, batch, efficient, steps = map(int, args[:6]); rest = args[6:]
        model = SeqResNet(k, r, n, bool(efficient))
    elif name == "resnet20":
        kind = args[0]; batch, efficient, steps = map(int, args[1:4]); rest = args[4:]
        model = ResNet(kind, 3, bool(efficient))
    elif name in ("seresnet56", "shakenet26-2x96d", "mobilenetv2"):
        kind = args[0]; batch, efficient, steps = map(int, args[1:4]); rest = args[4:]
        model = {"seresnet56": lambda: ResNet(kind, 9, bool(efficient), reduction=8),
                 "shakenet26-2x96d": lambda: ShakeNet(kind, bool(efficient)),
                 "mobilenetv2": lambda: MobileNetV2(kind, bool(efficient))}[name]()
    else:
        raise SystemExit(__doc__)
    counts = [int(n) for n in rest[:2]]
    if counts: torch.set_num_threads(counts[0])
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32); y = torch.randint(0, 10, (batch,))
    x.requires_grad_(bool(efficient))  # so that non-reentrant checkpoints of the first layer record
    times, compared = [], []
    # With a second count the two take turns of up to 5 timed steps, each after an untimed one, as
    # `reprise bench --compare-threads` does: the first step after a switch wakes the idle cores.
    per_turn, turn = (steps if len(counts) < 2 else 5), 0
    while len(times) < steps or (len(counts) == 2 and len(compared) < steps):
        comparing = len(counts) == 2 and turn % 2 == 1
        if len(counts) == 2: torch.set_num_threads(counts[1] if comparing else counts[0])
        done = compared if comparing else times
        for s in range(min(per_turn, steps - len(done)) + 1):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
            if s: done.append(time.perf_counter() - t)
        turn += 1
    if counts: torch.set_num_threads(counts[0])
    median = lambda v: sorted(v)[len(v) // 2]
    result = {"model": name, "batch": batch, "efficient": efficient,
        "params": sum(p.numel() for p in model.parameters()),
        "step_s_median": median(times), "step_s_min": min(times), "step_s": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "loss": loss.item()}
    if len(counts) == 2:
        result.update({"compare_threads": counts[1], "compare_step_s_median": median(compared), "compare_step_s": compared,
                       "speedup": median(compared) / result["step_s_median"]})
    result["macs"] = multiply_accumulates(model)  # after the timed steps and the peak RSS: it changes neither
    print(json.dumps(result))
