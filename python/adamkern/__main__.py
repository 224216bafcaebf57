"""``python -m adamkern bench|info|plot``.

``python -m adamkern plot "warmup_cosine_decay(0.0, 1e-3, 100, 10_000)" --steps 10000 --out lr.png``
plots any expression over the names of :mod:`adamkern.schedules`."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"bench": "benchmark the Adam step (see bench --help)",
                "info": "print adamkern.cpu_info() as JSON",
                "plot": "plot a schedule expression to a PNG (see plot --help)"}
    if not argv or argv[0] not in commands:
        parser = argparse.ArgumentParser(prog="python -m adamkern")
        parser.add_argument("command", choices=list(commands),
                            help="; ".join(f"{k}: {v}" for k, v in commands.items()))
        parser.parse_args(argv[:1])
    if argv[0] == "info":
        import adamkern

        print(json.dumps(adamkern.cpu_info(), indent=1))
        return 0
    if argv[0] == "plot":
        return plot(argv[1:])
    from adamkern import bench

    return bench.main(argv[1:])


def plot(argv) -> int:
    from adamkern import schedules

    parser = argparse.ArgumentParser(
        prog="python -m adamkern plot",
        description="Plot a schedule, written as a call of adamkern.schedules, to a PNG.")
    parser.add_argument("expression", help='e.g. "step_decay(1e-3, 10, 0.5)"')
    parser.add_argument("--steps", type=int, default=1000, help="plot steps 0..N-1")
    parser.add_argument("--out", default="schedule.png", help="PNG path (schedule.png)")
    args = parser.parse_args(argv)
    names = {name: getattr(schedules, name) for name in schedules.__all__}
    try:  # only the schedule factories are in scope, no builtins
        schedule = eval(args.expression, {"__builtins__": {}}, names)
    except Exception as error:  # noqa: BLE001 - report any bad expression the same way
        parser.error(f"could not evaluate {args.expression!r}: {error}")
    if not isinstance(schedule, schedules.Schedule):
        parser.error(f"{args.expression!r} is not a schedule")
    schedule.plot(args.steps, path=args.out)
    print(f"wrote {args.out}: {schedule!r} over {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
