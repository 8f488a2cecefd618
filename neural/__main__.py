"""`python -m neural <command>`: a plain dispatcher; each command's work lives in its own module.

    demo --out DIR      the free body in eight poses, rasterised (neural/demo.py)
    render --out DIR    a motion or T-pose through the generator from orbit cameras, to PNGs (neural/render_cli.py)
    retarget CLIP.bvh [--out motion.npz]
                        mocap of any common skeleton onto SMPL, with its metrics (neural/retarget_cli.py)
    import-official SRC.pth DST.safetensors --body smpl.npz
                        the released official weights → our checkpoint format (neural/official.py)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neural", description="3DHumanGAN neural renderer")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="render the free body in eight poses to PNGs and a contact sheet")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (created)")
    demo.add_argument("--body", type=Path, default=None, help="SMPL-format body .npz (default: the free body)")

    from .render_cli import add_arguments

    add_arguments(commands.add_parser("render", help="render poses with a generator checkpoint to RGBA PNGs"))

    from . import official, retarget_cli

    retarget_cli.add_arguments(commands.add_parser(
        "retarget", help="retarget a .bvh mocap clip onto SMPL, print its metrics, optionally save an AMASS .npz"))

    official.add_arguments(commands.add_parser(
        "import-official", help="convert the released official 3DHumanGAN weights (.pth) to a .safetensors model"))

    args = parser.parse_args(argv)
    return run_command(f"python -m neural {args.command}", lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    from . import official, retarget_cli

    if args.command == "render":
        from .render_cli import run as render

        render(args)
    elif args.command == "import-official":
        official.run(args)
    elif args.command == "retarget":
        retarget_cli.run(args)
    else:
        from .demo import render_demo

        paths = render_demo(args.out, body_path=args.body)
        print(f"wrote {paths[0]} and {len(paths) - 1} pose images")


if __name__ == "__main__":
    sys.exit(main())
