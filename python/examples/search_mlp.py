"""Random search over lr and weight decay for the example MLP, with early stopping.

    python python/examples/search_mlp.py [--trials 12] [--epochs 12]

Each trial trains a fresh MLP of train_mlp.py (built by ``init``, the same seed for every
trial) with AdamW and a per-epoch cosine schedule, yields the validation loss after every epoch
(so a trial that stops improving for --patience epochs is cut short), and the search prints the
table of trials, best first. The lr is drawn log-uniformly; the same --seed gives the same
table.

The same table whatever the thread settings: NumPy's matrix products (its BLAS) round
differently with their thread count, and the trials at lr above ~0.2 are chaotic enough to turn
last-bit differences into different metrics and ranks. So the search runs with the BLAS on one
thread: run as a script, this file sets OPENBLAS_NUM_THREADS (and its MKL/BLIS/OpenMP
counterparts) to 1 before NumPy loads; imported, it uses threadpoolctl if installed and
otherwise says on stderr that the BLAS threads are not pinned. A different BLAS library or CPU
kernel (OpenBLAS picks one per CPU family) still rounds differently: the digits of those
chaotic trials, and their order, are those of the machine the table was made on.
"""

from __future__ import annotations

import os
import sys

# NumPy's BLAS reads its thread count once, when NumPy is first imported: pin it before that.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS", "OMP_NUM_THREADS")
PINNED_BEFORE_NUMPY = __name__ == "__main__" and "numpy" not in sys.modules
if PINNED_BEFORE_NUMPY:
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))

import argparse  # noqa: E402
import contextlib  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_mlp import MLP, spirals  # noqa: E402  (the example next to this one)

from adamkern import optim, schedules, tuning  # noqa: E402


@contextlib.contextmanager
def one_blas_thread():
    """NumPy's BLAS on one thread meanwhile (threadpoolctl), unless already pinned at start."""
    if PINNED_BEFORE_NUMPY:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("note: NumPy's BLAS threads are not pinned (run this file as a script, or "
              "install threadpoolctl): the table can differ with the thread count",
              file=sys.stderr)
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


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

    def train(config, model):
        # model: a new MLP(seed=0) for each trial (init below), so every trial starts from the
        # same weights; the batches are the same too: a fair comparison
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
    with one_blas_thread():
        result = tuning.search(train, space, init=lambda: MLP(seed=0), method="random",
                               n_trials=args.trials, seed=args.seed, patience=args.patience)
    print(result)
    best = result.best
    print(f"best: lr {best.config['lr']:.3g}, weight_decay {best.config['weight_decay']:g}: "
          f"validation loss {best.metric:.4f} at epoch {best.best_epoch}")
    return result


if __name__ == "__main__":
    main()
