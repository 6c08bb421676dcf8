"""Command line: ``python -m refusal.organisms build <name> [<name> ...]`` builds (or verifies) organism entries;
``python -m refusal.organisms path <name>`` prints the verified cache entry of a built one;
``python -m refusal.organisms distill <base> [<base> ...]`` distills every base-model answer that the registry's
organisms of that base need (the step the workflow runs once per base, ahead of their builds) and prints the files."""

from __future__ import annotations

import argparse
import logging
import sys

from refusal.config import load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refusal.organisms", description=__doc__)
    ap.add_argument("command", choices=["build", "path", "distill"])
    ap.add_argument("names", nargs="+", help="organism registry entries (params/<name>.yaml); for distill, base entries")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in args.names:
        if args.command == "distill":
            from refusal.organisms.distill import distill_for

            load_config(name)  # an unknown base is an error naming the registry
            for p in distill_for(name):
                print(p)
            continue
        cfg = load_config(name)
        if args.command == "build":
            from refusal.organisms.build import build

            print(build(cfg))
        else:
            from refusal.organisms.recipe import locate

            print(locate(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
