"""The text of ``python -m adamkern bench``: the table of every case, the summary (adamkern's
figures and its ratio against each baseline), the table of the lower-precision storage modes,
and what the figures were measured on.

>>> from adamkern.bench import speed_words
>>> speed_words(1.25), speed_words(0.35)
('1.25x faster', '2.86x slower')
"""

from __future__ import annotations

import os

import numpy as np

import adamkern
from adamkern.bench.cases import case_label, size_label
from adamkern.bench.methods import METHODS

__all__ = ["format_modes", "format_summary", "format_table", "machine", "marker", "speed_words",
           "summary_rows"]


def speed_words(ratio: float) -> str:
    """``ratio`` = the other's time / this one's, as words: "1.25x faster", "2.86x slower"."""
    if not ratio > 0 or ratio == float("inf"):
        return "-"
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def marker(result) -> str:
    """" ! flag, flag" after a row the machine may have disturbed (trust.FLAGS)."""
    return f"  ! {', '.join(result.flags)}" if getattr(result, "flags", None) else ""


def _per_case(results, header, line) -> str:
    """A block per case: its label, `header`, and `line(result)` for each row."""
    lines, last = [], None
    for r in results:
        case = (r.size, r.threads, r.dtype, r.layout)
        if case != last:
            lines += ["", case_label(r), header]
            last = case
        lines.append(line(r) + marker(r))
    return "\n".join(lines)


def format_table(results) -> str:
    """Every method of every case: ns/element, GB/s, fraction of its roofline, adamkern's
    ratio; '!' and the flags after a row the machine may have disturbed."""
    width = max([21] + [len(r.method) for r in results])
    header = (f"{'method':<{width}} {'ns/elem':>8} {'GB/s':>7} {'of roofline':>12} "
              f"{'adamkern is':>14}")

    def line(r):
        ratio = "" if r.method in ("adamkern", "roofline") else speed_words(r.adamkern_speedup)
        return (f"{r.method:<{width}} {r.ns_per_element:>8.3f} {r.gb_per_s:>7.1f} "
                f"{r.of_roofline:>12.2f} {ratio:>14}")
    return _per_case(results, header, line)


def format_modes(results) -> str:
    """The storage rows of each case: bytes moved per element, ns/element, the fraction of
    their own roofline, and their speed against float32 adamkern and torch's fused float32
    AdamW, all from the same interleaved loop."""
    rows = [r for r in results if r.roofline != "roofline"]
    if not rows:
        return ""
    width = max(len(r.method) for r in rows)
    header = (f"{'mode':<{width}} {'bytes/elem':>10} {'ns/elem':>8} {'of its roofline':>16} "
              f"{'vs fp32 adamkern':>17} {'vs torch fused':>15}")

    def line(r):
        torch = "-" if r.vs_torch_fused is None else speed_words(r.vs_torch_fused)
        return (f"{r.method:<{width}} {r.gb_per_s * r.ns_per_element:>10.2f} "
                f"{r.ns_per_element:>8.3f} {r.of_roofline:>16.2f} "
                f"{speed_words(1 / r.adamkern_speedup):>17} {torch:>15}")
    return _per_case(rows, header, line).lstrip("\n")


def summary_rows(results):
    """One row per case: adamkern's figures and its ratio against every baseline present."""
    by_case: dict = {}
    for r in results:
        by_case.setdefault((r.layout, r.dtype, r.size, r.threads), {})[r.method] = r
    baselines = [s.name for s in METHODS if s.baseline
                 and any(r.method == s.name for r in results)]
    rows = []
    for (layout, dtype, size, threads), cells in by_case.items():
        ours = cells["adamkern"]
        row = {"layout": layout, "dtype": dtype, "size": size, "threads": threads,
               "ns_per_element": ours.ns_per_element, "gb_per_s": ours.gb_per_s,
               "of_roofline": ours.of_roofline,
               "flags": sorted({f for r in cells.values() for f in r.flags})}
        if "adamkern optim" in cells:
            row["optim_of_roofline"] = cells["adamkern optim"].of_roofline
        for name in baselines:
            row["vs " + name] = cells[name].adamkern_speedup if name in cells else None
        rows.append(row)
    return rows, baselines


def _summary_cells(row, baselines) -> list[str]:
    size = size_label(row["size"]) if row["layout"] == "tensor" else \
        f"model {row['size'] / 1e6:.1f}M"
    return ([size, row["dtype"], str(row["threads"]), f"{row['ns_per_element']:.3f}",
             f"{row['gb_per_s']:.1f}", f"{row['of_roofline']:.2f}",
             f"{row['optim_of_roofline']:.2f}" if "optim_of_roofline" in row else ""]
            + [speed_words(row["vs " + b]) if row["vs " + b] is not None else "-"
               for b in baselines]
            + ["! " + ", ".join(row["flags"]) if row["flags"] else ""])


def format_summary(results, markdown=False) -> str:
    rows, baselines = summary_rows(results)
    head = ["size", "dtype", "threads", "ns/elem", "GB/s", "of roofline", "optim of roofline"] \
        + ["vs " + b for b in baselines] + ["flags"]
    body = [_summary_cells(r, baselines) for r in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(h), *(len(row[k]) for row in body)) if body else len(h)
              for k, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths[:-1]) + f"  {{:<{widths[-1]}}}"
    return "\n".join(fmt.format(*row).rstrip() for row in [head] + body)


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def machine() -> dict:
    """What the figures were measured on."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "adamkern": adamkern.__version__, "platform": platform.platform(),
           "cpu": _cpu_name(), "cores": os.cpu_count()}
    try:
        out["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                  / 2**30, 1)
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            out["transparent_hugepage"] = f.read().strip()
    except (OSError, ValueError):
        pass
    for name in ("torch", "deepspeed", "bitsandbytes", "torchao", "matplotlib"):
        try:  # the installed version, without importing the package
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
