"""Random search over lr and weight decay for the example MLP, with early stopping.

    python python/examples/search_mlp.py [--trials 12] [--epochs 12]

Each trial trains the MLP of train_mlp.py with AdamW and a per-epoch cosine schedule, yields
the validation loss after every epoch (so a trial that stops improving for --patience epochs is
cut short), and the search prints the table of trials, best first. The lr is drawn
log-uniformly; the same --seed gives the same table.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_mlp import MLP, spirals  # noqa: E402  (the example next to this one)

from adamkern import optim, schedules, tuning  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x, y = spirals(seed=0)
    x_val, y_val = spirals(points_per_class=300, seed=1)

    def train(config):
        model = MLP(seed=0)  # the same init and batches for every trial: a fair comparison
        lr = schedules.cosine_decay(config["lr"], args.epochs).per_epoch(args.steps_per_epoch)
        opt = optim.AdamW(model.params, lr=lr, weight_decay=config["weight_decay"],
                          max_grad_norm=1.0)
        rng = np.random.default_rng(1)
        for _ in range(args.epochs):
            for _ in range(args.steps_per_epoch):
                batch = rng.integers(0, len(x), 128)
                model.loss_and_grads(x[batch], y[batch])
                opt.step(model.grads)
            with np.errstate(all="ignore"):  # a diverged trial gives inf: ranked last
                val_loss = model.loss_and_grads(x_val, y_val)  # (the grads are not used)
            yield val_loss

    space = {"lr": tuning.log_uniform(1e-4, 1.0), "weight_decay": [0.0, 1e-4, 1e-2]}
    result = tuning.search(train, space, method="random", n_trials=args.trials, seed=args.seed,
                           patience=args.patience)
    print(result)
    best = result.best
    print(f"best: lr {best.config['lr']:.3g}, weight_decay {best.config['weight_decay']:g}: "
          f"validation loss {best.metric:.4f} at epoch {best.best_epoch}")
    return result


if __name__ == "__main__":
    main()
