"""The plot of ``python -m adamkern bench``: effective bandwidth against size, one colour per
method, the legend beside the panels. Written by default outside the source tree (the user's
cache folder), so a run from a clone never overwrites a tracked file.

>>> from adamkern.bench import plot
>>> plot.default_path()  # doctest: +SKIP
'/home/me/.cache/adamkern/adamkern-bench.png'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from adamkern.bench.rows import Unavailable

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
    """One colour per method, none shared (up to 60): the roofline black, the others from
    tab10 (tab20, tab20b and tab20c beyond ten methods)."""
    import matplotlib

    others = [n for n in names if n != "roofline"]
    maps = ["tab10"] if len(others) <= 10 else ["tab20", "tab20b", "tab20c"]
    palette = [c for name in maps for c in matplotlib.colormaps[name].colors]
    colours = {name: palette[k % len(palette)] for k, name in enumerate(others)}
    colours["roofline"] = "black"
    return colours


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise Unavailable("--plot needs matplotlib: pip install \"adamkern[plot]\"") from error
    return plt


def _lines(ax, results, name, colour):
    """One method's bandwidth against size; the model-shaped list as a diamond."""
    mine = sorted((r for r in results if r.method == name), key=lambda r: r.size)
    line = [r for r in mine if r.layout == "tensor"]
    model = [r for r in mine if r.layout == "model"]
    style = "--" if name == "roofline" else "-"
    width = 2.4 if name in ("adamkern", "roofline") else 1.4
    if line:
        ax.plot([r.size for r in line], [r.gb_per_s for r in line], style, color=colour,
                lw=width, marker="o", ms=3.5, label=name)
    if model:
        ax.plot([r.size for r in model], [r.gb_per_s for r in model], "D", color=colour, ms=6,
                mfc="none", label=None if line else name)


def _panel(ax, results, names, colours, dtype, nthreads):
    """The panel of one (dtype, threads): every method, and the disturbed sizes shaded."""
    results = [r for r in results if (r.dtype, r.threads) == (dtype, nthreads)]
    for name in names:
        _lines(ax, results, name, colours[name])
    ax.set_xscale("log", base=2)
    flagged = [r for r in results if getattr(r, "flags", None)]
    for size in {r.size for r in flagged}:  # shade the sizes the machine disturbed
        ax.axvspan(size / 1.25, size * 1.25, color="firebrick", alpha=0.1, lw=0)
    flags = sorted({f for r in flagged for f in r.flags})
    ax.set_title(f"{dtype}, {nthreads} thread(s)" + (
        f"\n! shaded: disturbed, unreliable ({', '.join(flags)})" if flags
        else ""), color="firebrick" if flags else "black", fontsize=10)
    ax.set_xlabel("elements (diamonds: the 150-tensor model list)")
    ax.grid(True, which="both", alpha=0.3)


def _legend(fig, axes):
    handles = {}
    for ax in axes:  # every method once, whichever panels it appears in
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    # beside the panels, never over the data; bbox_inches="tight" widens the image to hold it
    fig.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95),
               fontsize=8, frameon=False)


def plot(results, path) -> str:
    """Effective bandwidth against size, one line per method, one panel per (dtype, threads);
    returns the path written. Needs matplotlib (raises Unavailable with the install hint
    without it)."""
    plt = _pyplot()
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
        _panel(ax, results, names, colours, dtype, nthreads)
    for ax in axes[::columns]:
        ax.set_ylabel("effective GB/s (bytes an Adam step moves / time)")
    fig.suptitle("AdamW step: bandwidth against size (higher is better; the dashed roofline "
                 "is the machine's limit)", fontsize=10)
    fig.tight_layout()
    _legend(fig, axes[:len(panels)])
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return written_path(path)
