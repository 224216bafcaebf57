"""Finding the learning rate: Smith's range test and grid / random hyperparameter search.

Both work with any :mod:`adamkern.optim` optimizer and any torch optimizer
(:mod:`adamkern.torch` included), around the user's own training code.

>>> result = adamkern.tuning.lr_range_test(opt, step_fn, start_lr=1e-6, end_lr=1.0)
>>> result.suggestion, result.plot("lr_range.png")        # params and state are as before
>>> found = adamkern.tuning.search(train, {"lr": adamkern.tuning.log_uniform(1e-4, 1e-1)},
...                                init=make_model, method="random", n_trials=20, seed=0)
>>> print(found); found.best.config      # train(config, model) got a new make_model() each trial
"""

from __future__ import annotations

from adamkern._range_test import RangeTestResult, lr_range_test
from adamkern._search import (Distribution, SearchResult, Trial, log_uniform, search,
                              uniform)

__all__ = [
    "Distribution",
    "RangeTestResult",
    "SearchResult",
    "Trial",
    "log_uniform",
    "lr_range_test",
    "search",
    "uniform",
]
