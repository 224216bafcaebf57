"""``python -m adamkern bench|info``."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"bench": "benchmark the Adam step (see bench --help)",
                "info": "print adamkern.cpu_info() as JSON"}
    if not argv or argv[0] not in commands:
        parser = argparse.ArgumentParser(prog="python -m adamkern")
        parser.add_argument("command", choices=list(commands),
                            help="; ".join(f"{k}: {v}" for k, v in commands.items()))
        parser.parse_args(argv[:1])
    if argv[0] == "info":
        import adamkern

        print(json.dumps(adamkern.cpu_info(), indent=1))
        return 0
    from adamkern import bench

    return bench.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
