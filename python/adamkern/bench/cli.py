"""The command line of ``python -m adamkern bench``: arguments, the plan of a run and what it
will cost (printed before it starts), the run, the report (and the verdict on how far to trust
it), and the time and peak memory it took.

    python -m adamkern bench --dry-run          # the cases, the expected time and memory
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import asdict

import numpy as np

import adamkern
from adamkern import bench
from adamkern.bench import plot, trust
from adamkern.bench.cases import DEFAULT_SIZES, LARGE_SIZES, QUICK_SIZES, STREAMS, M, case_label, \
    plan, size_label
from adamkern.bench.cost import case_bytes, estimate
from adamkern.bench.family import FAMILY_SIZE, format_family_table, run_family
from adamkern.bench.methods import METHODS, select_methods
from adamkern.bench.overhead import format_overhead, run_overhead
from adamkern.bench.placement import format_placement, run_placement
from adamkern.bench.report import format_modes, format_summary, format_table, machine, \
    summary_rows
from adamkern.bench.rows import Unavailable
from adamkern.bench.table import run_cases
from adamkern.bench.scaling import format_scaling, run_scaling

__all__ = ["main"]


_SWITCHES = {  # the options that are on or off, and what they do
    "--quick": "64K, 1M and 8M elements, 1 and all threads, short runs (~30 s)",
    "--large": f"add {', '.join(size_label(s) for s in LARGE_SIZES)} elements and the rows "
               f"only worth it there (torch single, adamkern bf16 params), every thread count "
               f"1..all: ~14 GB of memory and several minutes",
    "--8bit": "add bitsandbytes' and torchao's 8-bit CPU AdamW (when installed): slow rows, "
              "and torchao compiles its step for each tensor shape first",
    "--no-torch": "leave torch (and the libraries built on it) out",
    "--model": "only the 150-tensor transformer-shaped list",
    "--no-model": "leave the transformer-shaped list out",
    "--family": "every optimizer of the family against adam and the rooflines (15M elements "
                "unless --sizes) instead of the Adam table",
    "--torch": "the optimizer step inside a torch training loop: a 149-tensor, 10M-parameter "
               "transformer, adamkern.torch.AdamW (float32, bfloat16 and int8 state) against "
               "torch.optim.AdamW(fused=True), interleaved (200 steps; --quick 50), and the "
               "step's cost beyond its kernel (10 and 150 tensors), instead of the Adam table",
    "--sparse": "the row-sparse step of a 1M x 64 float32 embedding table, 64K Zipf lookups a "
                "step: adamkern.sparse and adamkern.torch against torch.optim.SparseAdam, "
                "torch's sparse Adagrad and torch.optim.Adam(fused=True) on the dense grad, "
                "1 and 2 threads (or --threads); the touched bytes a second against their "
                "roofline (each distinct row of the param and state read and written once, "
                "every gradient row and index read once, at roofline_'s bandwidth; see "
                "docs/sparse.md), instead of the Adam table (~3 GB, ~30 s)",
    "--overhead": "Python call overhead",
    "--placement": "alignment, huge pages and first touch (16M unless --sizes)",
    "--scaling": "time against size, 16K..64M elements, and the slopes",
    "--all": "the Adam table for float32 and float64 with --large, then --overhead, "
             "--placement and --scaling: everything BENCHMARKS.md reports",
    "--no-plot": "write no PNG",
    "--no-progress": "no progress on stderr (a bar on a terminal, else a line per case)",
    "--markdown": "also print the summary as a Markdown table",
    "--dry-run": "print the Adam table's cases, the expected time and memory, and stop",
}


def _switches(parser, *flags):
    for flag in flags:
        parser.add_argument(flag, action="store_true", help=_SWITCHES[flag],
                            dest="eight_bit" if flag == "--8bit" else None)


def _parse(argv, prog):
    # the argument types shared by every command of `python -m adamkern`
    from adamkern.__main__ import at_least, image_path, output_path

    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=bench.__doc__.split("\n\n")[0],
        epilog="Every figure is a median of interleaved repetitions in this process; ratios "
               "compare medians of the same run. See BENCHMARKS.md for the method.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu (default); cuda runs adamkern.bench.cuda (the CUDA build)")
    _switches(parser, "--quick", "--large")
    parser.add_argument("--sizes", type=at_least(1), nargs="+", help="element counts")
    parser.add_argument("--threads", type=at_least(1), nargs="+",
                        help="thread counts (default: 1 and all; --large: 1..all)")
    parser.add_argument("--dtype", nargs="+", choices=["float32", "float64"],
                        default=["float32"], help="float32 (default) and/or float64")
    parser.add_argument("--methods", nargs="+", metavar="NAME",
                        help=f"rows to run (roofline and adamkern always): "
                             f"{', '.join(s.name for s in METHODS)}")
    _switches(parser, "--8bit")
    parser.add_argument("--budget", type=at_least(0.001, float),
                        help="seconds of timing per case (3; --quick: 0.5)")
    _switches(parser, "--no-torch", "--model", "--no-model", "--family", "--torch", "--sparse",
              "--overhead", "--placement", "--scaling", "--all")
    parser.add_argument("--json", metavar="PATH", type=output_path,
                        help="also write the results as JSON")
    parser.add_argument("--plot", metavar="PNG", type=image_path,
                        help="bandwidth against size per method (default, except with "
                             "--quick: adamkern-bench.png in the user's cache folder, "
                             "~/.cache/adamkern)")
    _switches(parser, "--no-plot", "--no-progress", "--markdown", "--dry-run")
    return parser, parser.parse_args(argv)


def _threads(args, cores):
    # 1..all only with --large: on a 64-core machine that is 64 times the cases
    large = (args.large or args.all) and not args.quick
    return args.threads or (list(range(1, cores + 1)) if large else sorted({1, cores}))


def _table_plan(args, cores):
    """The Adam table's cases, rows and budget for parsed arguments, and (for the default run)
    the estimate of the same run with --large."""
    quick, large = args.quick, args.large or args.all
    specs = select_methods(args.methods, quick, large, opt_in=args.eight_bit)
    if args.no_torch:
        specs = [s for s in specs if not s.torch]
    dtypes = ["float32", "float64"] if args.all else args.dtype
    layouts = ["model"] if args.model else \
        ["tensor"] if (args.no_model or quick or args.sizes) else ["tensor", "model"]
    sizes = args.sizes or (QUICK_SIZES if quick else
                           DEFAULT_SIZES + (LARGE_SIZES if large else []))
    budget = args.budget or (0.5 if quick else 3.0)
    larger = None
    if not (large or quick or args.sizes):
        larger = estimate(plan(sizes + LARGE_SIZES, args.threads or range(1, cores + 1), dtypes,
                               layouts),
                          select_methods(args.methods, large=True), budget)
    return plan(sizes, _threads(args, cores), dtypes, layouts), specs, budget, larger


def _gb(nbytes):
    return f"{nbytes / 1e9:.1f} GB"


def _duration(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _available_memory():
    """Bytes the system can still give (MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def _announce(cases, specs, budget, larger=None):
    """What the run is about to do and what it will cost, before it starts."""
    peak, seconds = estimate(cases, specs, budget)
    sizes = sorted({c.size for c in cases if c.layout == "tensor"})
    what = [f"{size_label(sizes[0])}..{size_label(sizes[-1])}" if len(sizes) > 1
            else size_label(sizes[0])] if sizes else []
    if any(c.layout == "model" for c in cases):
        what.append("the 150-tensor model list")
    dtypes = ", ".join(sorted({c.dtype for c in cases}))
    threads = "/".join(str(t) for t in sorted({c.threads for c in cases}))
    print(f"{len(cases)} case(s) ({' and '.join(what)}; {dtypes}; {threads} thread(s)) x "
          f"{len(specs)} methods: expect about {_duration(seconds)} and {_gb(peak)} of "
          f"memory at the peak" + (f" (--large: about {_duration(larger[1])} and "
                                   f"{_gb(larger[0])})" if larger else ""), flush=True)
    available = _available_memory()
    if available is not None and peak > available:
        print(f"warning: this run needs about {_gb(peak)} of memory and {_gb(available)} is "
              f"available: it may be killed (choose fewer or smaller --sizes, or --methods)",
              file=sys.stderr, flush=True)


def _cuda(argv, prog) -> int:
    try:
        # by its module name: `from adamkern.bench import cuda` would take a package
        # attribute left by an earlier import over what sys.modules holds now
        cuda = importlib.import_module("adamkern.bench.cuda")
    except ImportError as error:
        print(f"{prog} --device cuda: the CUDA benchmark is not "
              f"available in this installation ({error})", file=sys.stderr)
        return 2
    rest = [a for a in argv if a not in ("--device", "cuda") and not a.startswith("--device=")]
    return cuda.run(rest, prog=f"{prog} --device cuda")


def _dry_run(cases, specs, budget, larger) -> int:
    _announce(cases, specs, budget, larger)
    for case in cases:
        print(f"  {case_label(case)}: {_gb(case_bytes(case, specs))}")
    print(f"  methods: {', '.join(s.name for s in specs)}")
    return 0


def _header(argv, prog, cores, load_start) -> dict:
    """Prints what runs where; returns the report's start (command, machine, CPU)."""
    info = adamkern.cpu_info()
    report: dict = {"command": f"{prog} " + " ".join(argv),
                    "machine": machine(), "cpu_info": info}
    print(f"adamkern {adamkern.__version__}: isa {info['isa']} (available "
          f"{', '.join(info['available_isas'])}), {cores} thread(s), OpenMP "
          f"{'on' if info['openmp'] else 'off'}; {report['machine'].get('cpu', '')}; "
          f"AdamW step, {STREAMS} streams per element; medians of interleaved runs")
    usable = trust.usable_cores()
    if load_start is not None and load_start > usable:
        print(f"warning: the load average is {load_start:.2f} on {usable} usable core(s): "
              f"other programs are running, and the figures will show it (see the flags)",
              file=sys.stderr, flush=True)
    return report


def _print_tables(results, markdown, skipped) -> None:
    print(format_table(results))
    print("\nSummary: adamkern's figures, and how much faster adamkern is than each "
          "baseline (same run)")
    print(format_summary(results))
    if markdown:
        print("\n" + format_summary(results, markdown=True))
    modes = format_modes(results)
    if modes:
        print("\nLower-precision storage (adamkern.lowp) and 8-bit AdamW, each against its own "
              "roofline\n(roofline_ on arrays of its storage), float32 adamkern and torch's fused "
              "float32 AdamW, all timed\ninterleaved in one loop per case")
        print(modes)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")


def _table(args, run_plan, progress, report, load_start) -> None:
    """The Adam table: its cases run, printed, judged, recorded and plotted."""
    cases, specs, budget, larger = run_plan
    _announce(cases, specs, budget, larger)
    skipped: dict = {}
    results = run_cases(cases, specs, budget, progress, skipped)
    _print_tables(results, args.markdown, skipped)
    load_end = trust.load_average()
    verdict = trust.verdict(results, trust.usable_cores(), load_start, load_end)
    print("\n" + "\n".join(verdict))
    report.update(results=[asdict(r) for r in results], summary=summary_rows(results)[0],
                  skipped=skipped, load_average={"start": load_start, "end": load_end},
                  verdict=verdict)
    plot_path = args.plot or (None if (args.quick or args.no_plot) else plot.default_path())
    if plot_path and not args.no_plot:
        try:
            print(f"wrote {plot.plot(results, plot_path)}")
        except Unavailable as why:
            print(f"no plot: {why}")


def _studies(args, threads, budget, progress, report) -> None:
    """--overhead, --placement, --scaling (each also part of --all)."""
    if args.overhead or args.all:
        report["overhead"] = rows = run_overhead(threads, quick=args.quick)
        print("\nPython call overhead (medians, microseconds)")
        print(format_overhead(rows))
    if args.placement or args.all:
        size = args.sizes[0] if (args.sizes and args.placement) else 16 * M
        report["placement"] = rows = run_placement(size, threads, args.dtype[0], budget * 2,
                                                   progress)
        print("\nMemory placement: the same step on differently allocated arrays "
              "(interleaved)")
        print(format_placement(rows))
    if args.scaling or args.all:
        sizes = args.sizes if (args.sizes and args.scaling) else None
        rows, slopes = run_scaling(threads, sizes, args.dtype[0], budget / 3, progress)
        print("\nScaling: ns/element against size")
        print(format_scaling(rows, slopes))
        report["scaling"] = {"rows": rows, "slopes": slopes}


def _family(args, threads, budget, progress, report) -> None:
    size = args.sizes[0] if args.sizes else FAMILY_SIZE
    family = run_family(size, threads, np.dtype(args.dtype[0]).type, budget / 3,
                        progress=progress)
    print(format_family_table(family))
    report["family"] = [asdict(r) | {"streams": r.streams} for r in family]


def _torch_study(module, switch):
    """The bench module of a study that runs torch (None, said on stderr, without torch)."""
    try:
        import torch  # noqa: F401

        return importlib.import_module(f"adamkern.bench.{module}")
    except ImportError as error:
        print(f"{switch} needs torch ({error})", file=sys.stderr)
        return None


def _torch_loop(args, threads, report) -> None:
    """--torch: the step in a training loop, and its cost beyond the kernel."""
    torchloop = _torch_study("torchloop", "--torch")
    if torchloop is None:
        return
    steps = 50 if args.quick else 200
    print(f"\nThe optimizer step in a training loop ({steps} steps after 10 untimed, "
          f"forward and backward untimed; medians)", flush=True)
    rows = torchloop.run(steps=steps, threads=threads)
    print(torchloop.format_rows(rows))
    costs = [torchloop.overhead(tensors=count, threads=1, steps=100 if args.quick else 400)
             for count in (10, 150)]
    print("\nThe step's cost beyond its kernel (1 thread, 1000-element tensors; medians, µs)")
    print(torchloop.format_overhead(costs))
    report["torch_loop"] = [r._asdict() for r in rows]
    report["torch_overhead"] = [c._asdict() for c in costs]


def _sparse(args, report, load_start) -> None:
    """--sparse: the row-sparse step of an embedding table against torch's."""
    sparse_bench = _torch_study("sparse", "--sparse")
    if sparse_bench is None:
        return
    threads = args.threads or [1, 2]
    budget = args.budget or (3.0 if args.quick else 6.0)
    print(f"\nThe row-sparse step of an embedding table ({budget:g} s of interleaved steps "
          f"per thread count; medians)", flush=True)
    rows, facts = sparse_bench.run(threads=threads, budget_s=budget,
                                   progress=not args.no_progress)
    print(sparse_bench.format_rows(rows, facts))
    verdict = sparse_bench.verdict(rows, trust.usable_cores(), load_start, trust.load_average())
    print("\n".join(verdict))
    report["sparse"] = {**facts, "rows": [r._asdict() for r in rows], "verdict": verdict}


def _finish(args, report, started) -> None:
    peak = trust.peak_rss_bytes()
    elapsed = time.perf_counter() - started
    report["elapsed_s"], report["peak_rss_bytes"] = elapsed, peak
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    print(f"done in {elapsed:.0f} s" + (f"; peak memory {_gb(peak)} (this process's largest "
                                        f"resident set)" if peak else ""))


def main(argv=None, prog="python -m adamkern bench") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    started, load_start = time.perf_counter(), trust.load_average()
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device")
    if device.parse_known_args(argv)[0].device == "cuda":  # its own options (--sizes 1M,64M)
        return _cuda(argv, prog)
    parser, args = _parse(argv, prog)
    cores = adamkern.get_num_threads()
    try:
        run_plan = _table_plan(args, cores)
    except ValueError as error:
        parser.error(f"--methods: {error}")
    if args.dry_run:
        return _dry_run(*run_plan)
    report = _header(argv, prog, cores, load_start)
    threads, progress = _threads(args, cores), not args.no_progress
    if args.family:
        _family(args, threads, run_plan[2], progress, report)
    if args.torch:
        _torch_loop(args, threads, report)
    if args.sparse:
        _sparse(args, report, load_start)
    if not (args.family or args.torch or args.sparse or args.overhead or args.placement
            or args.scaling) or args.all:
        _table(args, run_plan, progress, report, load_start)
    _studies(args, threads, run_plan[2], progress, report)
    _finish(args, report, started)
    return 0
