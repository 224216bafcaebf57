"""Training in lower precision reaches the float32 loss where rounding to nearest stalls.

A noisy least-squares problem (512 samples, 64 weights of magnitude 1.1-1.6, started 0.6 away
from the truth, so every weight lies in [0.5, 2)) trained with Adam at lr 1e-3: each update
(about lr) is below half a bfloat16 ULP of the weights (2^-9 to 2^-8 there). So

(a) float32 params and state                  the baseline: the loss falls ~20x, to the noise
(b) bfloat16 params, stochastic rounding      reaches (a)'s final loss within 2%
(c) float32 params, 8-bit block-wise state    reaches (a)'s final loss within 2%
(d) bfloat16 params, rounding to nearest      stalls: every update rounds away

The loss is computed in float32 from the float32 view of the params (what the model would
use). ``pytest -s`` prints the final losses.
"""

from __future__ import annotations

import numpy as np
import pytest

import adamkern.optim
from adamkern import lowp

BF16 = lowp.bfloat16()
STEPS = 2000
LR = 1e-3


def least_squares(seed=0, samples=512, weights=64, noise=1.0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((samples, weights)).astype(np.float32)
    sign = rng.choice([-1.0, 1.0], weights)
    truth = (sign * rng.uniform(1.1, 1.6, weights)).astype(np.float32)
    targets = (features @ truth + noise * rng.standard_normal(samples)).astype(np.float32)
    start = (truth - sign * 0.6).astype(np.float32)
    return features, targets, start


def loss_of(features, targets, weights):
    residual = features @ weights.astype(np.float32) - targets
    return float(np.float32(0.5) * np.mean(residual * residual, dtype=np.float32))


def train(optimizer, param_dtype, steps=STEPS, **settings):
    """Full-batch training; returns (initial loss, final loss, the params)."""
    features, targets, start = least_squares()
    weights = start.astype(param_dtype)
    opt = getattr(adamkern.optim, optimizer)([weights], lr=LR, **settings)
    initial = loss_of(features, targets, weights)
    scale = np.float32(1 / len(targets))
    for _ in range(steps):
        residual = features @ weights.astype(np.float32) - targets
        opt.step([((features.T @ residual) * scale).astype(param_dtype)])
    return initial, loss_of(features, targets, weights), weights


def optimum_loss():
    features, targets, _ = least_squares()
    solution = np.linalg.lstsq(features.astype(np.float64), targets.astype(np.float64),
                               rcond=None)[0]
    return loss_of(features, targets, solution.astype(np.float32))


OPTIMIZERS = {"Adam": {}, "AdamW": {"weight_decay": 1e-4}}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_stochastic_rounding_and_8bit_state_match_float32(optimizer):
    settings = OPTIMIZERS[optimizer]
    initial, baseline, _ = train(optimizer, np.float32, **settings)
    _, stochastic, _ = train(optimizer, BF16, rounding="stochastic", seed=1, **settings)
    _, int8_state, _ = train(optimizer, np.float32, state_dtype="int8", **settings)
    _, nearest, stalled = train(optimizer, BF16, **settings)
    print(f"\n{optimizer}, {STEPS} steps at lr {LR}: initial loss {initial:.4f}, "
          f"optimum {optimum_loss():.4f}\n"
          f"  (a) float32 params + float32 state   {baseline:.4f}\n"
          f"  (b) bfloat16 params, stochastic      {stochastic:.4f}\n"
          f"  (c) float32 params + int8 state      {int8_state:.4f}\n"
          f"  (d) bfloat16 params, nearest         {nearest:.4f}")
    # a meaningful problem: the baseline learns a lot, and reaches the optimum's loss
    assert baseline < initial / 10
    assert baseline < 1.01 * optimum_loss()
    assert abs(stochastic - baseline) <= 0.02 * baseline
    assert abs(int8_state - baseline) <= 0.02 * baseline
    # rounding to nearest stalls: far from the baseline, and the params barely moved
    assert nearest > 1.5 * baseline
    _, _, start = least_squares()
    assert np.mean(stalled.astype(np.float32) != start.astype(BF16).astype(np.float32)) < 0.1


@pytest.mark.parametrize("settings", [
    {"rounding": "stochastic", "seed": 2, "state_dtype": "int8"},
    {"rounding": "stochastic", "seed": 3, "state_dtype": "bfloat16"},
    {"master_weights": True},
    {"master_weights": True, "state_dtype": "int8"},
], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_all_low_precision_settings_reach_the_float32_loss(settings):
    """bfloat16 params with low-precision state, or with float32 master weights (which also
    recover what rounding to nearest loses)."""
    _, baseline, _ = train("Adam", np.float32)
    _, loss, _ = train("Adam", BF16, **settings)
    assert abs(loss - baseline) <= 0.02 * baseline, (loss, baseline)


def test_float16_params_with_master_weights_reach_the_float32_loss():
    _, baseline, _ = train("Adam", np.float32)
    _, loss, _ = train("Adam", np.float16, master_weights=True)
    assert abs(loss - baseline) <= 0.02 * baseline, (loss, baseline)
