"""The former name of :mod:`adamkern.bench.cuda` (``python -m adamkern bench --device cuda``),
kept for code that imports it.

>>> from adamkern import bench_cuda
>>> bench_cuda.run(["--sizes", "1M"])   # prints the table; 0 on success
"""

from __future__ import annotations

from adamkern.bench.cuda import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":  # python -m adamkern.bench_cuda (docs/cuda.md)
    raise SystemExit(run())
