"""Find a learning rate for the example MLP with Smith's range test, then train with it.

    python python/examples/lr_range_test.py [--steps 100] [--plot lr_range.png]

The range test runs AdamW on the MLP of train_mlp.py (spirals, generated) with the lr rising
geometrically from 1e-5 to 10 until the loss diverges, suggests an lr, and puts the params and
the optimizer state back exactly as they were. The suggestion is then used for a short run.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_mlp import MLP, spirals  # noqa: E402  (the example next to this one)

from adamkern import optim, tuning  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps of the range test")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--plot", help="write loss vs lr to this PNG (needs matplotlib)")
    args = parser.parse_args(argv)

    x, y = spirals()
    model = MLP()
    opt = optim.AdamW(model.params, weight_decay=1e-4)
    rng = np.random.default_rng(1)

    def step_fn():
        batch = rng.integers(0, len(x), args.batch)
        with np.errstate(all="ignore"):  # the test ends by driving the loss to inf on purpose
            loss = model.loss_and_grads(x[batch], y[batch])
        opt.step(model.grads)
        return loss

    before = model.flat.copy()
    result = tuning.lr_range_test(opt, step_fn, start_lr=1e-5, end_lr=10.0,
                                  num_steps=args.steps)
    assert np.array_equal(model.flat, before) and opt.step_count == 0  # nothing changed
    print(result)
    print(f"suggested lr: {result.suggestion:.3g} (steepest descent), "
          f"{result.suggestions['min/10']:.3g} (minimum / 10)")

    opt.param_groups[0]["lr"] = result.suggestion
    for step in range(args.train_steps):
        loss = step_fn()
        if step % max(args.train_steps // 5, 1) == 0 or step == args.train_steps - 1:
            print(f"step {step:4d}  loss {loss:.4f}")
    print(f"train accuracy {model.accuracy(x, y):.3f} after {args.train_steps} steps at "
          f"lr {result.suggestion:.3g}")

    if args.plot:
        result.plot(args.plot)
        print(f"wrote {args.plot}")
    return result


if __name__ == "__main__":
    main()
