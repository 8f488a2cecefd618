"""`python -m neural <command>`: a plain dispatcher; each command's work lives in its own module.

    demo --out DIR      the free body in eight poses, rasterised (neural/demo.py)
    render --out DIR    a motion or T-pose through the generator from orbit cameras, to PNGs (neural/render_cli.py)
    import-official SRC.pth DST.safetensors --body smpl.npz
                        the released official weights → our checkpoint format (neural/official.py)
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

    from .render_cli import add_arguments

    add_arguments(commands.add_parser("render", help="render poses with a generator checkpoint to RGBA PNGs"))

    from . import official

    official.add_arguments(commands.add_parser(
        "import-official", help="convert the released official 3DHumanGAN weights (.pth) to a .safetensors model"))

    args = parser.parse_args(argv)
    if args.command == "render":
        from .cli import run_command
        from .render_cli import run as render

        def command() -> None:  # exit 0 when every image was written; 1 / 130 / 143 from run_command
            render(args)

        return run_command("python -m neural render", command)
    if args.command == "import-official":
        try:
            official.run(args)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command == "demo":
        from .demo import render_demo

        paths = render_demo(args.out, body_path=args.body)
        print(f"wrote {paths[0]} and {len(paths) - 1} pose images")
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
