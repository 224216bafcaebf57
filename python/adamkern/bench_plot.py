"""The plot of ``python -m adamkern bench``: effective bandwidth against size, one colour per
method, the legend beside the panels. Written by default outside the source tree (the user's
cache folder), so a run from a clone never overwrites a tracked file.

>>> from adamkern import bench_plot
>>> bench_plot.default_path()  # doctest: +SKIP
'/home/me/.cache/adamkern/adamkern-bench.png'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["default_path", "plot", "written_path"]


def default_path() -> str:
    """``$XDG_CACHE_HOME/adamkern/adamkern-bench.png`` (``~/.cache`` when unset), or the
    system's temporary folder where that cannot be created."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(cache, "adamkern"), os.path.join(tempfile.gettempdir(),
                                                                 "adamkern")):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return os.path.join(folder, "adamkern-bench.png")
    return os.path.join(tempfile.gettempdir(), "adamkern-bench.png")


def written_path(path: str) -> str:
    """The file matplotlib writes for ``path``: without a suffix it adds ``.png``."""
    return path if Path(path).suffix else path + ".png"


def _colours(names):
    """One colour per method, none shared: the roofline black, the others from tab10 (tab20
    beyond ten methods)."""
    import matplotlib

    others = [n for n in names if n != "roofline"]
    cmap = matplotlib.colormaps["tab10" if len(others) <= 10 else "tab20"]
    colours = {name: cmap(k % cmap.N) for k, name in enumerate(others)}
    colours["roofline"] = "black"
    return colours


def plot(results, path, unavailable=Exception):
    """Effective bandwidth against size, one line per method, one panel per (dtype, threads);
    the model-shaped list as a diamond at its size. Needs matplotlib (raises ``unavailable``
    with the install hint without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise unavailable("--plot needs matplotlib: pip install \"adamkern[plot]\"") from error
    names = list(dict.fromkeys(r.method for r in results))  # the order of the table
    colours = _colours(names)
    panels = sorted({(r.dtype, r.threads) for r in results})
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.6 * columns, 4.2 * rows), squeeze=False,
                             sharey=True)
    axes = axes.reshape(-1)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (dtype, nthreads) in zip(axes, panels):
        for name in names:
            mine = sorted((r for r in results if r.method == name and r.dtype == dtype
                           and r.threads == nthreads), key=lambda r: r.size)
            line = [r for r in mine if r.layout == "tensor"]
            model = [r for r in mine if r.layout == "model"]
            style = "--" if name == "roofline" else "-"
            width = 2.4 if name in ("adamkern", "roofline") else 1.4
            if line:
                ax.plot([r.size for r in line], [r.gb_per_s for r in line], style,
                        color=colours[name], lw=width, marker="o", ms=3.5, label=name)
            if model:
                ax.plot([r.size for r in model], [r.gb_per_s for r in model], "D",
                        color=colours[name], ms=6, mfc="none", label=None if line else name)
        ax.set_xscale("log", base=2)
        flagged = [r for r in results if (r.dtype, r.threads) == (dtype, nthreads)
                   and getattr(r, "flags", None)]
        for size in {r.size for r in flagged}:  # shade the sizes the machine disturbed
            ax.axvspan(size / 1.25, size * 1.25, color="firebrick", alpha=0.1, lw=0)
        flags = sorted({f for r in flagged for f in r.flags})
        ax.set_title(f"{dtype}, {nthreads} thread(s)" + (
            f"\n! shaded: disturbed, unreliable ({', '.join(flags)})" if flags
            else ""), color="firebrick" if flags else "black", fontsize=10)
        ax.set_xlabel("elements (diamonds: the 150-tensor model list)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel("effective GB/s (bytes an Adam step moves / time)")
    handles = {}
    for ax in axes[:len(panels)]:  # every method once, whichever panels it appears in
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.suptitle("AdamW step: bandwidth against size (higher is better; the dashed roofline "
                 "is the machine's limit)", fontsize=10)
    fig.tight_layout()
    # beside the panels, never over the data; bbox_inches="tight" widens the image to hold it
    fig.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95),
               fontsize=8, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return written_path(path)
