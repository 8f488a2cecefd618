"""`python -m neural <command>`: a plain dispatcher onto the command modules in commands/ (not part of the library,
not in the extension zip).

    demo --out DIR      the free body in eight poses, rasterised (commands/raster_demo.py)
    render --out DIR    a motion or T-pose through the generator from orbit cameras, to PNGs (commands/render.py)
    retarget CLIP.bvh [--out motion.npz]
                        mocap of any common skeleton onto SMPL, with its metrics (commands/retarget.py)
    import-official SRC.pth DST.safetensors --body smpl.npz
                        the released official weights → our checkpoint format (commands/import_official.py)
    body convert SRC.pkl DST.npz | body info FILE
                        the official SMPL .pkl → .npz without chumpy; a body file's summary (commands/body.py)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from commands import body, import_official, render, retarget

from .cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neural", description="3DHumanGAN neural renderer")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="render the free body in eight poses to PNGs and a contact sheet")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (created)")
    demo.add_argument("--body", type=Path, default=None, help="SMPL-format body .npz (default: the free body)")
    render.add_arguments(commands.add_parser("render", help="render poses with a generator checkpoint to RGBA PNGs"))
    retarget.add_arguments(commands.add_parser(
        "retarget", help="retarget a .bvh mocap clip onto SMPL, print its metrics, optionally save an AMASS .npz"))
    import_official.add_arguments(commands.add_parser(
        "import-official", help="convert the released official 3DHumanGAN weights (.pth) to a .safetensors model"))
    body.add_arguments(commands.add_parser("body", help="SMPL-format body files: convert the official .pkl, info"))

    args = parser.parse_args(argv)
    return run_command(f"python -m neural {args.command}", lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    if args.command == "demo":
        from commands.raster_demo import render_demo

        paths = render_demo(args.out, body_path=args.body)
        print(f"wrote {paths[0]} and {len(paths) - 1} pose images")
    elif args.command == "render":
        render.run(args)
    elif args.command == "retarget":
        retarget.run(args)
    elif args.command == "import-official":
        import_official.run(args)
    else:
        body.run(args)


if __name__ == "__main__":
    sys.exit(main())
