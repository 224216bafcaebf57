"""The same torch model trained with adamkern.torch.AdamW and with
torch.optim.AdamW(fused=True): identical losses, and the optimizer-step time of each.

    python python/examples/torch_adamw.py [--steps 100] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import adamkern.torch


def make_model(hidden):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, 10))


def train(make_optimizer, steps, hidden):
    model = make_model(hidden)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(512, 64, generator=generator)
    y = torch.randint(0, 10, (512,), generator=generator)
    opt = make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses, step_times = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        start = time.perf_counter()
        opt.step()
        step_times.append(time.perf_counter() - start)
        sched.step()
        losses.append(loss.item())
    return losses, statistics.median(step_times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args(argv)
    ours, our_time = train(lambda p: adamkern.torch.AdamW(p, lr=1e-3), args.steps, args.hidden)
    theirs, their_time = train(lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True), args.steps,
                               args.hidden)
    params = sum(p.numel() for p in make_model(args.hidden).parameters())
    print(f"{params / 1e6:.2f}M params, {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}")
    print(f"final loss: adamkern.torch.AdamW {ours[-1]:.6f}, torch fused {theirs[-1]:.6f}; "
          f"all {len(ours)} losses identical: {ours == theirs}")
    print(f"optimizer step (median): adamkern {our_time * 1e3:.3f} ms, torch fused "
          f"{their_time * 1e3:.3f} ms ({their_time / our_time:.2f}x)")
    return ours == theirs


if __name__ == "__main__":
    main()
