"""``adamkern bench|info|plot`` (or ``python -m adamkern ...``).

``python -m adamkern plot "warmup_cosine_decay(0.0, 1e-3, 100, 10_000)" --steps 10000 --out lr.png``
plots any expression over the names of :mod:`adamkern.schedules`.

A mistake on the command line is one message on stderr and exit status 2 (argparse's), never
a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["at_least", "image_path", "main", "output_path", "program_name"]


def program_name(argv0: str | None = None) -> str:
    """How the program was started, for usage lines: "adamkern" for the console script,
    "python -m adamkern" for ``python -m adamkern`` (and anything else)."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    stem = os.path.splitext(name)[0]  # adamkern.exe, adamkern-script.py on Windows
    if name != "__main__.py" and stem.startswith("adamkern"):
        return "adamkern"
    return "python -m adamkern"


def at_least(minimum, kind=int):
    """An argparse type: a number of `kind` no smaller than `minimum`."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    return parse


def output_path(text: str) -> str:
    """An argparse type: a file path whose folder exists (checked before any work is done)."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file name")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder {os.path.dirname(text) or folder!r} of "
                                         f"{text!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {folder!r}")
    return text


def image_path(text: str) -> str:
    """An argparse type: :func:`output_path` whose suffix, if any, is an image format that
    matplotlib writes (none: matplotlib adds .png)."""
    output_path(text)
    suffix = os.path.splitext(text)[1].lower().lstrip(".")
    if suffix:
        try:
            from matplotlib.figure import Figure
        except ImportError:  # reported when the plot is drawn
            return text
        formats = Figure().canvas.get_supported_filetypes()
        if suffix not in formats:
            raise argparse.ArgumentTypeError(f"matplotlib cannot write .{suffix} files; "
                                             f"use one of {', '.join(sorted(formats))}")
    return text


def main(argv=None) -> int:
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `adamkern bench | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv) -> int:
    program = program_name()
    commands = {"bench": "benchmark the Adam step (see bench --help)",
                "info": "print adamkern.cpu_info() as JSON",
                "plot": "plot a schedule expression to a PNG (see plot --help)"}
    if not argv or argv[0] not in commands:
        from adamkern import __version__

        parser = argparse.ArgumentParser(
            prog=program, description="Fused SIMD + OpenMP Adam-family optimizer updates.")
        parser.add_argument("--version", action="version", version=f"adamkern {__version__}")
        parser.add_argument("command", choices=list(commands),
                            help="; ".join(f"{k}: {v}" for k, v in commands.items()))
        parser.parse_args(argv[:1])
        parser.error(f"unexpected {argv[0]!r}")  # an option in place of the command
    if argv[0] == "info":
        argparse.ArgumentParser(prog=f"{program} info",
                                description="Print adamkern.cpu_info() as JSON.").parse_args(
            argv[1:])
        import adamkern

        print(json.dumps(adamkern.cpu_info(), indent=1))
        return 0
    if argv[0] == "plot":
        return plot(argv[1:], prog=f"{program} plot")
    from adamkern import bench

    return bench.main(argv[1:], prog=f"{program} bench")


def plot(argv, prog="python -m adamkern plot") -> int:
    from adamkern import schedules

    parser = argparse.ArgumentParser(
        prog=prog, description="Plot a schedule, written as a call of adamkern.schedules, to "
                               "a PNG (or another suffix matplotlib writes).")
    parser.add_argument("expression", help='e.g. "step_decay(1e-3, 10, 0.5)"')
    parser.add_argument("--steps", type=at_least(1), default=1000,
                        help="plot steps 0..N-1 (N >= 1; 1000)")
    parser.add_argument("--out", type=image_path, default="schedule.png",
                        help="image path (schedule.png; without a suffix, .png is added)")
    args = parser.parse_args(argv)
    names = {name: getattr(schedules, name) for name in schedules.__all__}
    try:  # only the schedule factories are in scope, no builtins
        schedule = eval(args.expression, {"__builtins__": {}}, names)
    except Exception as error:  # noqa: BLE001 - report any bad expression the same way
        parser.error(f"could not evaluate {args.expression!r}: {error}")
    if not isinstance(schedule, schedules.Schedule):
        parser.error(f"{args.expression!r} is not a schedule")
    try:
        import matplotlib
    except ImportError:
        parser.error('plotting needs matplotlib: pip install "adamkern[plot]"')
    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    figure = schedule.plot(args.steps, path=args.out)
    plt.close(figure)
    written = args.out if os.path.splitext(args.out)[1] else args.out + ".png"
    print(f"wrote {written}: {schedule!r} over {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
