"""Train a small MLP in plain NumPy with adamkern: AdamW (or any optimizer of the family),
warmup + cosine schedule, gradient clipping, a checkpoint, and a loss-curve PNG.

    python python/examples/train_mlp.py [--steps 600] [--optimizer adamw] [--plot loss.png]
    python python/examples/train_mlp.py --optimizer all      # each in turn, a table of losses

The data (three interleaved spirals, 3000 points) is generated; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import adamkern
from adamkern import optim, schedules


def spirals(points_per_class=1000, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.05, 1.0, points_per_class), classes)
    label = np.repeat(np.arange(classes), points_per_class)
    angle = label * 2 * np.pi / classes + radius * 4.0 + rng.normal(0, 0.15, radius.size)
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32)
    return x, label


class MLP:
    """2 -> hidden -> hidden -> classes with tanh, params kept in one flat buffer."""

    def __init__(self, hidden=64, classes=3, seed=0):
        rng = np.random.default_rng(seed)
        shapes = [(2, hidden), (hidden,), (hidden, hidden), (hidden,), (hidden, classes),
                  (classes,)]
        init = [rng.normal(0, 1 / np.sqrt(s[0]), s).astype(np.float32) if len(s) == 2
                else np.zeros(s, np.float32) for s in shapes]
        self.flat, self.params = adamkern.flatten(init)
        _, self.grads = adamkern.flatten([np.zeros_like(p) for p in init])

    def loss_and_grads(self, x, y):
        w1, b1, w2, b2, w3, b3 = self.params
        h1 = np.tanh(x @ w1 + b1)
        h2 = np.tanh(h1 @ w2 + b2)
        logits = h2 @ w3 + b3
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).mean()
        d = p
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        g1, gb1, g2, gb2, g3, gb3 = self.grads
        g3[...] = h2.T @ d
        gb3[...] = d.sum(0)
        d = (d @ w3.T) * (1 - h2 * h2)
        g2[...] = h1.T @ d
        gb2[...] = d.sum(0)
        d = (d @ w2.T) * (1 - h1 * h1)
        g1[...] = x.T @ d
        gb1[...] = d.sum(0)
        return float(loss)

    def accuracy(self, x, y):
        w1, b1, w2, b2, w3, b3 = self.params
        return float(((np.tanh(np.tanh(x @ w1 + b1) @ w2 + b2) @ w3 + b3).argmax(1) == y).mean())


# The peak rates are each optimizer's usual scale for this model, not tuned per optimizer:
# Adam's unless listed (sign-based Lion a tenth of Adam's, RMSprop too; Adagrad and Adadelta,
# which shrink their own steps, higher).
PEAK = 1e-2
PEAKS = {"lion": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-1, "adadelta": 10.0}
# name: (class, peak learning rate or None for an optimizer without a schedule, keywords), for
# the runs that are not an optimizer with its default keywords.
OWN_RUNS = {
    "adamw": (optim.AdamW, 1e-2, {"weight_decay": 1e-4}),
    "amsgrad": (optim.Adam, 1e-2, {"amsgrad": True}),
    "ademamix": (optim.AdEMAMix, 1e-2, {"alpha_warmup": 100, "beta3_warmup": 100}),
    "sgd": (optim.SGD, 1e-1, {"momentum": 0.9, "nesterov": True}),
    # no schedule: Schedule-Free averages its iterates instead (a warmup of its own)
    "adamw_schedulefree": (optim.AdamWScheduleFree, None, {"lr": 1e-2, "warmup_steps": 30}),
    "sgd_schedulefree": (optim.SGDScheduleFree, None, {"lr": 0.5, "warmup_steps": 30}),
    # no schedule either: Prodigy estimates its step size (lr 1.0 scales that estimate)
    "prodigy": (optim.Prodigy, None, {}),
    # its own relative step size (min(lr, 1/sqrt(step)) times the params' scale), no clipping
    "adafactor": (optim.Adafactor, 1e-2, {}),
    # cautious updates (Liang et al. 2024): the components against the gradient's sign dropped
    "adamw_cautious": (optim.AdamW, 1e-2, {"weight_decay": 1e-4, "cautious": True}),
    "lion_cautious": (optim.Lion, 1e-3, {"cautious": True}),
    "adopt_cautious": (optim.ADOPT, 1e-2, {"cautious": True}),
}
# Every run: adamw first (the default), then each optimizer of the registry with its default
# keywords (its class named by the registry) unless it has its own run, then the other runs.
OPTIMIZERS = {
    "adamw": OWN_RUNS["adamw"],
    **{name: (getattr(optim, adamkern.registry.describe(name).class_name),
              PEAKS.get(name, PEAK), {})
       for name in adamkern.registry.names() if name not in OWN_RUNS},
    **OWN_RUNS,
}
# the optimizers whose class has no gradient clipping
UNCLIPPED = {"adafactor"}


def make_optimizer(name, params, steps):
    """The optimizer ``name`` of :data:`OPTIMIZERS` on ``params``, with a warmup + cosine
    schedule to its peak rate (a constant rate where the optimizer sets its own steps), and
    its schedule."""
    cls, peak, keywords = OPTIMIZERS[name]
    lr = None if peak is None else schedules.warmup_cosine_decay(
        0.0, peak, warmup_steps=steps // 20, decay_steps=steps, end_value=peak / 100)
    clipping = {} if name in UNCLIPPED else {"max_grad_norm": 1.0}
    return cls(params, **({} if lr is None else {"lr": lr}), **keywords, **clipping), lr


def train(name, steps, batch_size, quiet=False):
    """Trains a fresh MLP ``steps`` steps with the optimizer ``name``; the losses and the
    model."""
    x, y = spirals()
    model = MLP()
    opt, lr = make_optimizer(name, model.params, steps)
    schedule_free = hasattr(opt, "train")  # steps in train mode, evaluated in eval mode
    if schedule_free:
        opt.train()
    rng = np.random.default_rng(1)
    losses = []
    for step in range(steps):
        batch = rng.integers(0, len(x), batch_size)
        losses.append(model.loss_and_grads(x[batch], y[batch]))
        opt.step(model.grads)
        if not quiet and (step % max(steps // 10, 1) == 0 or step == steps - 1):
            rate = f"lr {lr(step):.2e}  " if lr is not None else ""
            norm = getattr(opt, "last_grad_norm", None)
            print(f"step {step:5d}  loss {losses[-1]:.4f}  {rate}"
                  + (f"grad norm {norm:.3f}" if norm is not None else ""))
    if schedule_free:
        opt.eval()  # the params to the average: what is evaluated and saved
    return losses, model, opt, lr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--optimizer", choices=[*OPTIMIZERS, "all"], default="adamw",
                        help="adamw (default), any of the family, or all: each in turn, "
                             "printing a table of final losses")
    parser.add_argument("--plot", help="write the loss curve to this PNG (needs matplotlib)")
    args = parser.parse_args(argv)

    if args.optimizer == "all":
        print("| optimizer | final loss (mean of the last 20 steps) | train accuracy |")
        print("|---|---:|---:|")
        finals = {}
        for name in OPTIMIZERS:
            losses, model, _, _ = train(name, args.steps, args.batch, quiet=True)
            finals[name] = float(np.mean(losses[-20:]))
            print(f"| {name} | {finals[name]:.4f} | {model.accuracy(*spirals()):.3f} |",
                  flush=True)
        return finals

    losses, model, opt, lr = train(args.optimizer, args.steps, args.batch)
    print(f"final loss {np.mean(losses[-20:]):.4f} (mean of the last 20 steps)")
    print(f"train accuracy {model.accuracy(*spirals()):.3f}")

    if not hasattr(opt, "save"):  # Adafactor's class: state_dict() only
        return losses
    with tempfile.TemporaryDirectory() as directory:  # a checkpoint round trip
        path = os.path.join(directory, "checkpoint.npz")
        opt.save(path)
        restored, _ = make_optimizer(args.optimizer, model.params, args.steps)
        restored.load(path)
        print(f"checkpoint: {os.path.getsize(path)} bytes, step_count {restored.step_count}")

    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(losses, lw=0.8)
        ax.set(xlabel="step", ylabel="cross-entropy", yscale="log",
               title=f"MLP on spirals: adamkern {args.optimizer}, clip 1.0")
        ax.grid(True, alpha=0.3)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return losses


if __name__ == "__main__":
    main()
