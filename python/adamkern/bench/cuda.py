"""``python -m adamkern bench --device cuda``: adamkern's CUDA AdamW against the device's copy
roofline and torch's fused CUDA AdamW, timed with CUDA events.

The roofline is a device-to-device copy of 14 bytes per element (cudaMemcpyAsync): it reads and
writes 28 bytes per element, the traffic of an fp32 Adam step (read param, grad, exp_avg,
exp_avg_sq; write param, exp_avg, exp_avg_sq). Figures are medians of interleaved repeats, as
effective bandwidth (28 bytes per element over the time) and as ratios: adamkern / roofline and
adamkern / torch fused. Needs adamkern built with ADAMKERN_CUDA=ON, a GPU, and torch with CUDA
(to allocate device memory and for the comparison).

>>> from adamkern.bench import cuda
>>> cuda.run(["--sizes", "1M,64M"])   # prints the table; 0 on success
"""

from __future__ import annotations

import argparse
import statistics
import sys

__all__ = ["main", "run"]

_BYTES_PER_ELEMENT = 28  # fp32 Adam: 4 streams read, 3 written


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _parser(prog: str = "python -m adamkern bench --device cuda") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="adamkern CUDA AdamW vs the copy roofline and torch fused CUDA AdamW")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1M,16M,64M,256M",
                        help="comma-separated element counts (K, M, G suffixes)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median)")
    parser.add_argument("--iterations", type=int, default=10, help="steps per timed repeat")
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device index")
    return parser


def _unavailable() -> str | None:
    import adamkern.cuda

    if not adamkern.cuda.available():
        return ("adamkern was built without CUDA: rebuild with ADAMKERN_CUDA=ON pip install . "
                "(see the README's 'Building with CUDA')")
    if adamkern.cuda.device_count() == 0:
        return "no CUDA device is available (no GPU or no driver)"
    try:
        import torch
    except ImportError:
        return "the CUDA benchmark needs torch with CUDA: pip install 'adamkern[torch]'"
    if not torch.cuda.is_available():
        return f"the CUDA benchmark needs torch with CUDA; torch {torch.__version__} has none"
    return None


def _time(fn, iterations: int) -> float:
    """Seconds per call, measured with CUDA events around `iterations` calls."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iterations):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / iterations


def _check_against_torch(device) -> None:
    """The benchmarked update is right: adamkern's AdamW equals torch's fused one (within fp32
    rounding of their different orders of operations) after a few steps."""
    import torch

    import adamkern

    torch.manual_seed(0)
    n = 100003
    p0 = torch.randn(n, device=device)
    ours = [p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)]
    param = torch.nn.Parameter(p0.clone())
    optimizer = torch.optim.AdamW([param], lr=1e-3, fused=True)
    for step in range(1, 4):
        grad = torch.randn(n, device=device)
        adamkern.adamw_(ours[0], grad, ours[1], ours[2], step=step, lr=1e-3)
        param.grad = grad.clone()
        optimizer.step()
    torch.testing.assert_close(ours[0], param.detach())


def _cases(size, device) -> dict:
    """The three steps timed at `size` elements, each on its own device buffers."""
    import torch

    import adamkern

    source = torch.empty(size * _BYTES_PER_ELEMENT // 8, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    source.normal_()
    params, grad = torch.randn(size, device=device), torch.randn(size, device=device)
    exp_avg, exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
    torch_param = torch.nn.Parameter(params.clone())
    torch_param.grad = grad.clone()
    optimizer = torch.optim.AdamW([torch_param], lr=1e-3, fused=True)
    step = [0]

    def adamkern_step():
        step[0] += 1
        adamkern.adamw_(params, grad, exp_avg, exp_avg_sq, step=step[0], lr=1e-3)
    return {"copy": lambda: target.copy_(source), "adamkern": adamkern_step,
            "torch": optimizer.step}


def _medians(size, device, repeats, iterations) -> dict:
    """Median seconds per step of each case at `size` elements, interleaved repeats."""
    import torch

    cases = _cases(size, device)
    for fn in cases.values():  # warm up
        fn()
    times: dict = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(_time(fn, iterations))
    del cases
    torch.cuda.empty_cache()
    return {name: statistics.median(t) for name, t in times.items()}


def run(argv: list[str] | None = None,
        prog: str = "python -m adamkern bench --device cuda") -> int:
    """Runs the CUDA benchmark and prints its table; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    problem = _unavailable()
    if problem is not None:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 1
    import torch

    device = torch.device("cuda", args.gpu)
    torch.cuda.set_device(device)
    _check_against_torch(device)
    print(f"adamkern CUDA AdamW on {torch.cuda.get_device_name(device)} (fp32, "
          f"{_BYTES_PER_ELEMENT} B/element); medians of {args.repeats} interleaved repeats")
    header = (f"{'elements':>12} {'copy GB/s':>10} {'adamkern GB/s':>14} {'torch GB/s':>11} "
              f"{'vs roofline':>12} {'vs torch':>9}")
    print(header)
    print("-" * len(header))
    for size in (_parse_size(s) for s in args.sizes.split(",") if s.strip()):
        median = _medians(size, device, args.repeats, args.iterations)
        bandwidth = {name: size * _BYTES_PER_ELEMENT / t / 1e9 for name, t in median.items()}
        print(f"{size:>12,} {bandwidth['copy']:>10.0f} {bandwidth['adamkern']:>14.0f} "
              f"{bandwidth['torch']:>11.0f} {median['copy'] / median['adamkern']:>11.2f}x "
              f"{median['torch'] / median['adamkern']:>8.2f}x")
    return 0


main = run

if __name__ == "__main__":
    raise SystemExit(run())
