#!/usr/bin/env python3
"""The char-transformer example's training step in PyTorch, for side-by-side timing (never in CI).

The same configuration as Examples/char-transformer: the fortunes corpus, 4 pre-norm Transformer
blocks of width 128 with 4 heads and a 512-feature GELU feed-forward network, context 128, batch 32,
AdamW (lr 5e-3, betas (0.9, 0.99), weight decay 0.01), gradient clipping at norm 1, each block checkpointed.

Usage: python3 Scripts/torch_char_transformer.py [--steps N] [--threads T] [--no-checkpoint]
Prints the mean training-step time over the steps after one warm-up step.
"""
import argparse, os, time

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

CONTEXT, WIDTH, HEADS, DEPTH, BATCH = 128, 128, 4, 4, 32


def corpus(directory="/usr/share/games/fortunes"):
    text = b""
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if "." not in name and os.path.isfile(path):
            text += open(path, "rb").read()
    alphabet = sorted(set(text))
    code = {c: i for i, c in enumerate(alphabet)}
    return torch.tensor([code[c] for c in text], dtype=torch.long), len(alphabet)


class CharTransformer(nn.Module):
    def __init__(self, vocabulary, checkpointed):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary, WIDTH)
        self.position_embedding = nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(DEPTH))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, vocabulary)
        self.checkpointed = checkpointed
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, tokens):
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(tokens.shape[1]))
        for block in self.blocks:
            if self.checkpointed:
                x = checkpoint(block, x, self.mask, None, True, use_reentrant=False)
            else:
                x = block(x, src_mask=self.mask, is_causal=True)
        return self.head(self.norm(x)).transpose(1, 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-checkpoint", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens, vocabulary = corpus()
    model = CharTransformer(vocabulary, not args.no_checkpoint)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, betas=(0.9, 0.99), weight_decay=0.01)
    generator = torch.Generator().manual_seed(1)

    def step():
        starts = torch.randint(0, len(tokens) - CONTEXT - 1, (BATCH,), generator=generator)
        inputs = torch.stack([tokens[s:s + CONTEXT] for s in starts])
        targets = torch.stack([tokens[s + 1:s + CONTEXT + 1] for s in starts])
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(f"torch {torch.__version__}: {(time.perf_counter() - started) / args.steps:.4f} s a training step")


if __name__ == "__main__":
    main()
