"""``python -m adamkern bench``: the Adam step against the memory roofline, torch, DeepSpeed and
NumPy, and adamkern's lower-precision storage modes against their own rooflines.

Every method is timed in one process, interleaved (A B C A B C ..., the order rotated each
round), and reported as the median of its repetitions; ratios compare medians of the same run.
Before timing, each method's first step is checked against adamkern's (bitwise for torch's fused
path, a few ULP otherwise), each storage mode's against the float32 op on its decoded values,
and each roofline kernel's against what it must write.

A row of the table is a method: an entry of :data:`METHODS` (name, bytes moved per element,
builder, check). The package holds one module per kind of measurement:

- ``fp32``, ``baselines``: adamkern's float32 rows and the roofline; torch and DeepSpeed;
- ``storage``: the lower-precision storage modes, each with its own roofline;
- ``eightbit``: bitsandbytes' and torchao's 8-bit AdamW (``--8bit``);
- ``family``, ``overhead``, ``placement``, ``scaling``, ``torchloop`` (``--torch``): the
  other studies; ``cuda``: the GPU;
- ``cases``, ``rows``, ``methods``, ``timing``, ``table``, ``cost``: what a run is made of;
- ``report``, ``trust``, ``plot``, ``cli``: what it prints, how far to trust it, its plot,
  its command line.

    python -m adamkern bench                    # 64K..8M and the model list; ~1 min, ~2.6 GB
    python -m adamkern bench --quick            # 64K, 1M, 8M elements; about 30 seconds
    python -m adamkern bench --large            # adds 16M, 64M and two rows; ~14 GB
    python -m adamkern bench --8bit             # adds bitsandbytes' and torchao's 8-bit AdamW
    python -m adamkern bench --dry-run          # the cases, the expected time and memory
    python -m adamkern bench --json out.json --plot out.png
    python -m adamkern bench --torch            # the step in a torch training loop
    python -m adamkern bench --overhead         # Python call overhead
    python -m adamkern bench --placement        # alignment, huge pages, first touch
    python -m adamkern bench --scaling          # time against size, cache boundaries
    python -m adamkern bench --all --json all.json --plot all.png   # everything above
"""

from __future__ import annotations

from adamkern.bench.cases import DEFAULT_SIZES, LARGE_SIZES, QUICK_SIZES, STREAMS, K, M, Case, \
    case_label, plan, size_label, transformer_shapes
from adamkern.bench.cost import DEFAULT_MEMORY_LIMIT, case_bytes, estimate, loop_bytes
from adamkern.bench.family import FAMILY, FamilyResult, family_method, format_family_table, \
    run_family
from adamkern.bench.methods import METHODS, register_method, select_methods
from adamkern.bench.overhead import format_overhead, run_overhead
from adamkern.bench.placement import format_placement, run_placement
from adamkern.bench.report import format_modes, format_summary, format_table, machine, \
    speed_words, summary_rows
from adamkern.bench.rows import MethodSpec, Unavailable, check, close_to_reference, groups
from adamkern.bench.table import Result, build_loop, build_methods, run, run_case, run_cases
from adamkern.bench.scaling import format_scaling, run_scaling
from adamkern.bench.storage import LOWP_MODES, StorageMode
from adamkern.bench.timing import Method, concat

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_SIZES", "FAMILY", "K", "LARGE_SIZES", "LOWP_MODES",
           "M", "METHODS", "QUICK_SIZES", "STREAMS", "Case", "FamilyResult", "Method",
           "MethodSpec", "Result", "StorageMode", "Unavailable", "build_loop", "build_methods",
           "case_bytes", "case_label", "check", "close_to_reference", "concat", "estimate",
           "family_method", "format_family_table", "format_modes", "format_overhead",
           "format_placement", "format_scaling", "format_summary", "format_table", "groups",
           "loop_bytes", "machine", "main", "plan", "register_method", "run", "run_case",
           "run_cases", "run_family", "run_overhead", "run_placement", "run_scaling",
           "select_methods", "size_label", "speed_words", "summary_rows", "transformer_shapes"]

_check = check  # the name bench/test_bench_adam.py calls


def main(argv=None, prog="python -m adamkern bench") -> int:
    """``python -m adamkern bench``: see :mod:`adamkern.bench.cli`."""
    from adamkern.bench import cli

    return cli.main(argv, prog)
