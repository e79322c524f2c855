"""Classifiers for data cleaning: input (B, 512) preprocessed records, output (B, n_classes) logits.

Architectures of the CRESST paper (seed 000, appendix Tables 3-6) and of the Cait paper
(seed 001, Table 2). With ``n_classes == 1`` a model returns one binary logit per record
(score = sigmoid); with ``n_classes > 1`` one logit per event class (probabilities = softmax)
and the binary score is the summed probability of the accepted classes (see `scores_from_logits`).

Choices where the tables leave room (all stated in the class docstrings):
- CNN (Table 3): conv -> max-pool -> ReLU (equal to conv -> ReLU -> pool, pooling is monotone).
- LSTM (Table 4): 3 bidirectional layers, input 8 samples per step (64 steps); the outputs of the
  two directions are SUMMED per step, giving the table's 64 x 200 = 12800 inputs to the last layer.
- TST (Table 6): the encoder of Zerveas et al. (mvts_transformer, the paper's ref. [26]): learnable
  positional encoding, batch-norm encoder layer, GELU, dropout 0.1; the record is cut into 64
  tokens of 8 samples (as the LSTM) so attention is over 64 steps.
- Cait CNN (Table 2): the layers of Cait's ``CNNModule`` (cait/models/_cnn_model.py): conv(50, k 8,
  stride 4) -> ReLU -> max-pool 2 -> conv(10, k 8, stride 4) -> ReLU -> max-pool 2 -> 200 -> out.
  For 512 samples that gives 10 x 7 = 70 inputs to the first dense layer; the table's 639 cannot
  come from 512 samples with 10 channels.
- ResNet (beyond the seeds; issue 19): a 1D residual network with the capacity the universal task
  needs (see `ResNet1D`).

`embed(model, x)` gives every model's penultimate activations (the input of its last linear
layer), which the out-of-distribution score of `cleaning.calibration` measures distances in.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .architectures import ARCHITECTURES
from .preprocess import LENGTH


class Classifier(nn.Module):
    """Base class: records the head size and, once trained, the class names and accepted classes."""

    name = "base"

    def __init__(self, n_classes: int = 1):
        super().__init__()
        if int(n_classes) < 1:
            raise InputError(f"n_classes: must be >= 1, got {n_classes}")
        self.n_classes = int(n_classes)
        self.class_names: list[str] | None = None
        self.accepted: list[int] | None = None


def _conv_block(c_in, c_out, kernel, pool=1, padding=0, stride=1):
    layers = [nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding)]
    if pool > 1:
        layers.append(nn.MaxPool1d(pool))
    layers.append(nn.ReLU())
    return layers


class CresstCNN(Classifier):
    """CRESST CNN (Table 3): 3 conv (k 8; 4, 16, 64 channels; max-pool 4) -> 320 -> 200 -> 84 -> out."""

    name = "cnn"

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        self.net = nn.Sequential(
            *_conv_block(1, 4, 8, pool=4), *_conv_block(4, 16, 8, pool=4), *_conv_block(16, 64, 8, pool=4),
            nn.Flatten(), nn.Linear(320, 200), nn.ReLU(), nn.Linear(200, 84), nn.ReLU(), nn.Linear(84, self.n_classes),
        )

    def forward(self, x):
        return self.net(x.unsqueeze(1))


class FullWindowCNN(Classifier):
    """The CRESST CNN made to see the whole record (beyond the seeds).

    Table 3's CNN (k 8, no padding, max-pool 4 flooring) never looks at the last 45 of the 512
    samples (its last feature reaches input sample 466): a second pulse, spike or step in the last
    9 % of the window is invisible to it. Here every conv is padded by 4 and every pool keeps the
    partial last window (ceil mode): 3 conv (k 8; 4, 16, 64 channels; max-pool 4) -> 576 -> 200 -> 84
    -> out, the same layers and ~10 % more work.
    """

    name = "cnn_full"

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        layers, c_in = [], 1
        for c in (4, 16, 64):
            layers += [nn.Conv1d(c_in, c, 8, padding=4), nn.MaxPool1d(4, ceil_mode=True), nn.ReLU()]
            c_in = c
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(64 * 9, 200), nn.ReLU(), nn.Linear(200, 84), nn.ReLU(),
            nn.Linear(84, self.n_classes),
        )

    def forward(self, x):
        return self.net(x.unsqueeze(1))


class CresstLSTM(Classifier):
    """CRESST LSTM (Table 4): 3-layer bidirectional LSTM (8 samples per step, hidden 200).

    The forward and backward outputs are summed at each of the 64 steps: 64 x 200 = 12800 inputs
    to the final linear layer, as in the table.
    """

    name = "lstm"
    step = 8
    hidden = 200

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        self.lstm = nn.LSTM(self.step, self.hidden, num_layers=3, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(LENGTH // self.step * self.hidden, self.n_classes)

    def forward(self, x):
        b = x.shape[0]
        out, _ = self.lstm(x.reshape(b, -1, self.step))
        out = out.reshape(b, out.shape[1], 2, self.hidden).sum(dim=2)
        return self.fc(out.reshape(b, -1))


class TSCN(Classifier):
    """CRESST TSCN (Table 5): 8 conv (k 3, pad 1; 16-16-32-32-64-64-128-128, max-pool 2 after each pair)
    -> 4096 -> 1024 -> 512 -> out."""

    name = "tscn"

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        layers, c_in = [], 1
        for c in (16, 32, 64, 128):
            layers += _conv_block(c_in, c, 3, padding=1) + _conv_block(c, c, 3, pool=2, padding=1)
            c_in = c
        self.net = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(128 * LENGTH // 16, 1024), nn.ReLU(),
            nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, self.n_classes),
        )

    def forward(self, x):
        return self.net(x.unsqueeze(1))


class BatchNormEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer with BatchNorm1d instead of LayerNorm (Zerveas et al. 2020)."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.norm1 = nn.BatchNorm1d(d_model, eps=1e-5)
        self.norm2 = nn.BatchNorm1d(d_model, eps=1e-5)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    @staticmethod
    def _norm(norm, x):  # (B, S, D): batch-norm over the feature axis D
        return norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x):
        a, _ = self.attn(x, x, x, need_weights=False)
        x = self._norm(self.norm1, x + self.drop1(a))
        return self._norm(self.norm2, x + self.drop2(self.ff(x)))


class TST(Classifier):
    """CRESST TST (Table 6): 1 encoder block, 8 heads, d_model 64, d_ff 256 (Zerveas' classifier).

    Tokens of 8 samples (64 steps) -> linear to d_model x sqrt(d_model) -> learnable positional
    encoding -> encoder -> GELU -> dropout -> flatten (64 x 64) -> out.
    """

    name = "tst"
    step = 8

    def __init__(self, n_classes: int = 1, d_model=64, n_heads=8, d_ff=256, n_blocks=1, dropout=0.1):
        super().__init__(n_classes)
        n_steps = LENGTH // self.step
        self.d_model = d_model
        self.embed = nn.Linear(self.step, d_model)
        self.position = nn.Parameter(torch.empty(n_steps, d_model).uniform_(-0.02, 0.02))
        self.drop_in = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[BatchNormEncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_blocks)])
        self.head = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Flatten(), nn.Linear(n_steps * d_model, self.n_classes))

    def forward(self, x):
        tokens = self.embed(x.reshape(x.shape[0], -1, self.step)) * math.sqrt(self.d_model)
        return self.head(self.blocks(self.drop_in(tokens + self.position)))


class CaitCNN(Classifier):
    """Cait CNN (Cait paper Table 2, layers as Cait's CNNModule): conv(50, k 8, s 4) -> ReLU ->
    pool 2 -> conv(10, k 8, s 4) -> ReLU -> pool 2 -> 70 -> 200 (ReLU) -> out."""

    name = "cait_cnn"

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        self.net = nn.Sequential(
            nn.Conv1d(1, 50, 8, stride=4), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(50, 10, 8, stride=4), nn.ReLU(), nn.MaxPool1d(2),
            nn.Flatten(), nn.Linear(70, 200), nn.ReLU(), nn.Linear(200, self.n_classes),
        )

    def forward(self, x):
        return self.net(x.unsqueeze(1))


class ResidualBlock(nn.Module):
    """Two conv (kernel k, BatchNorm, ReLU) with an identity or 1x1-conv (strided) shortcut."""

    def __init__(self, c_in, c_out, kernel=7, stride=1):
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(),
            nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False), nn.BatchNorm1d(c_out),
        )
        self.short = (nn.Identity() if stride == 1 and c_in == c_out else
                      nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


class ResNet1D(Classifier):
    """1D ResNet (beyond the seeds): stride-2 stem conv (k 7, 24 channels), 4 stages of residual
    blocks (24, 48, 72, 96 channels, kernel 7; stages 2-4 start with stride 2), then the mean and the
    max over time of the last stage concatenated (192) -> out. 2 blocks in the first stage, 1 in the
    others: ~0.23 M parameters; the receptive field covers the whole 512-sample record.

    Why: the CRESST CNN (cnn_full, 142k parameters) under-fits the universal simulation (issue 19:
    BA 0.882 on a fresh draw of its own training distribution); this one reaches 0.967 on a foreign
    simulator with the same data. Mean+max pooling keeps small, short features (a spike, a second
    pulse) visible next to the global shape.
    """

    name = "resnet"
    widths = (24, 48, 72, 96)
    blocks = (2, 1, 1, 1)

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        w = self.widths
        self.stem = nn.Sequential(nn.Conv1d(1, w[0], 7, stride=2, padding=3, bias=False), nn.BatchNorm1d(w[0]),
                                  nn.ReLU())
        layers, c_in = [], w[0]
        for i, (c, k) in enumerate(zip(w, self.blocks)):
            for j in range(k):
                layers.append(ResidualBlock(c_in, c, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * w[-1], self.n_classes)

    def features(self, x):
        """Pooled features (B, 192) of (B, 512) preprocessed records."""
        h = self.stages(self.stem(x.unsqueeze(1)))
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)

    def forward(self, x):
        return self.fc(self.features(x))


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's output layer (its last nn.Linear)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"model {getattr(model, 'name', model)!r}: no linear output layer")
    return linears[-1]


def embed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate activations (B, D), logits (B, C)) of `model` on preprocessed records `x`."""
    seen = {}
    handle = last_linear(model).register_forward_hook(lambda m, inp, out: seen.__setitem__("h", inp[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return seen["h"].reshape(len(x), -1), logits


#: the architectures of the registry (`cleaning.architectures`) and their Adam learning rates
MODELS = {name: globals()[cls] for name, (cls, _) in ARCHITECTURES.items()}
LEARNING_RATES = {name: lr for name, (_, lr) in ARCHITECTURES.items()}


def build_model(name: str, *, n_classes: int = 1) -> Classifier:
    """A fresh model of the registry `MODELS` with `n_classes` outputs (1: binary logit)."""
    if name not in MODELS:
        raise InputError(f"model: unknown name {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](n_classes)


def scores_from_logits(logits: torch.Tensor, *, accepted=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Binary acceptance score (B,) and class probabilities (B, C) (None for a binary head).

    Binary head: score = sigmoid(logit). Multi-class head: probabilities = softmax(logits) and
    score = sum of the probabilities of the `accepted` class indices.
    """
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits[..., 0]), None
    if accepted is None or len(accepted) == 0:
        raise InputError("accepted: a multi-class model needs the indices of the accepted classes")
    probs = torch.softmax(logits, dim=-1)
    idx = torch.as_tensor(list(accepted), dtype=torch.long, device=logits.device)
    if idx.min() < 0 or idx.max() >= logits.shape[-1]:
        raise InputError(f"accepted: class indices {list(accepted)} outside 0..{logits.shape[-1] - 1}")
    return probs.index_select(-1, idx).sum(dim=-1), probs
