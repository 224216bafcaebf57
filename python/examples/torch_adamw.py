"""The same torch model trained with adamkern.torch.AdamW and with
torch.optim.AdamW(fused=True): identical losses and weights (adamkern's AdamW is bitwise equal
to torch's fused one), and the optimizer-step time of each.

The two trainings run side by side, one step of each in turn (which one goes first alternates),
so a change in the machine's load hits both alike; the times are medians over the steps. The
exit status is 1 if any loss or final weight differs.

    python python/examples/torch_adamw.py [--steps 100] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import adamkern.torch


def ours(params):
    return adamkern.torch.AdamW(params, lr=1e-3)


def theirs(params):
    return torch.optim.AdamW(params, lr=1e-3, fused=True)


def make_model(hidden):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, 10))


class Training:
    """A model, its optimizer and schedule, stepped one step at a time."""

    def __init__(self, make_optimizer, steps, hidden, x, y):
        self.model, self.x, self.y = make_model(hidden), x, y
        self.opt = make_optimizer(self.model.parameters())
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, steps)
        self.losses, self.step_times = [], []

    def step(self):
        self.opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        start = time.perf_counter()
        self.opt.step()
        self.step_times.append(time.perf_counter() - start)
        self.sched.step()
        self.losses.append(loss.item())


def train_both(steps, hidden):
    """Trains both, interleaved; returns (ours, theirs) Trainings."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(512, 64, generator=generator)
    y = torch.randint(0, 10, (512,), generator=generator)
    pair = [Training(ours, steps, hidden, x, y), Training(theirs, steps, hidden, x, y)]
    for k in range(steps):
        for training in (pair if k % 2 == 0 else pair[::-1]):
            training.step()
    return pair


def first_difference(a: Training, b: Training) -> str | None:
    """Where the two trainings first differ (None: every loss and weight is identical)."""
    for k, (x, y) in enumerate(zip(a.losses, b.losses)):
        if x != y:
            return f"the loss of step {k + 1}: adamkern {x!r}, torch fused {y!r}"
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        if not torch.equal(p, q):
            return f"the final weights {name} (max |difference| {(p - q).abs().max().item():.3g})"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.hidden < 1:
        parser.error("--steps and --hidden must be at least 1")
    a, b = train_both(args.steps, args.hidden)
    params = sum(p.numel() for p in a.model.parameters())
    our_time, their_time = statistics.median(a.step_times), statistics.median(b.step_times)
    print(f"{params / 1e6:.2f}M params, {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}")
    difference = first_difference(a, b)
    print(f"final loss: adamkern.torch.AdamW {a.losses[-1]:.6f}, torch fused "
          f"{b.losses[-1]:.6f}; all {len(a.losses)} losses and the final weights identical: "
          f"{difference is None}")
    ratio = their_time / our_time
    print(f"optimizer step (median, interleaved): adamkern {our_time * 1e3:.3f} ms, torch "
          f"fused {their_time * 1e3:.3f} ms (adamkern "
          f"{f'{ratio:.2f}x faster' if ratio >= 1 else f'{1 / ratio:.2f}x slower'})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores; the times are "
              f"unreliable (the losses are not affected)")
    if difference is not None:
        print(f"error: adamkern.torch.AdamW and torch's fused AdamW differ at {difference}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
