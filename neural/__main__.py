"""`python -m neural <command>`: a plain dispatcher; each command's work lives in its own module.

    demo --out DIR      the free body in eight poses, rasterised (neural/demo.py)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neural", description="3DHumanGAN neural renderer")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="render the free body in eight poses to PNGs and a contact sheet")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (created)")
    demo.add_argument("--body", type=Path, default=None, help="SMPL-format body .npz (default: the free body)")

    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import render_demo

        paths = render_demo(args.out, body_path=args.body)
        print(f"wrote {paths[0]} and {len(paths) - 1} pose images")
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
