"""`python -m training {synth, prepare, train, evaluate}`: the training package's command line
(docs/overview.md §Packages).

    python -m training synth --out DIR --count N [--size 128x256] [--seed S] [--body FILE]
    python -m training prepare --images DIR [--fits FILE_OR_DIR] --out DIR [--size 128x256] [--masks DIR]
                               [--parts DIR] [--body FILE] [--strict]     (no --fits: detect and fit the people)
    python -m training train --preset P --data DIR --run DIR [--steps N] [--batch B] [--device auto|cpu|cuda]
                             [--skip-bad]
(sizes are WIDTHxHEIGHT, as in `neural render` and Blender)
    python -m training evaluate --data DIR --out DIR --model M [M ...]     (training/evaluate.py)
    torchrun --standalone --nproc_per_node N -m training train --preset P --data DIR --run-dir DIR
        (data-parallel over N processes; under torchrun spell --run as --run-dir, which torchrun leaves alone)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neural.body import free_body_path
from neural.cli import run_command

from .arguments import portrait_size, positive_int


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)

    s = commands.add_parser("synth", help="synthetic photo collection with known ground truth")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--count", type=positive_int, required=True)
    s.add_argument("--size", type=portrait_size, default=(128, 256), help="WIDTHxHEIGHT (default 128x256)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--body", type=Path, default=None, help="SMPL-format body .npz (default: the free body)")
    s.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads (default 1: its many small ops gain little from more, and lose a lot on a "
                        "busy machine)")

    r = commands.add_parser("prepare", help="photo collection + SMPL fits → dataset folder")
    r.add_argument("--images", type=Path, required=True)
    r.add_argument("--fits", type=Path, default=None,
                   help="a fits file or a folder of per-image fits (default: detect and fit every person, offline)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--size", type=portrait_size, default=(128, 256),
                   help="WIDTHxHEIGHT of the dataset (default 128x256)")
    r.add_argument("--masks", type=Path, default=None, help="foreground masks, PNGs named like the images")
    r.add_argument("--parts", type=Path, default=None, help="part maps (labels 1..25), PNGs named like the images")
    r.add_argument("--body", type=Path, default=free_body_path(),
                   help="the SMPL-format body the fits were made for (SMPL fits: SMPL_NEUTRAL.npz)")
    r.add_argument("--margin", type=float, default=0.05, help="free frame fraction around the person")
    r.add_argument("--strict", action="store_true", help="refuse the whole collection if any input is bad")
    r.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the fitting (default 1)")

    t = commands.add_parser("train", help="train a generator (resumes an existing --run)")
    t.add_argument("--preset", required=True, help="cpu-small, tiny, paper-256, paper-512, or PRESET+ABLATION")
    t.add_argument("--data", type=Path, required=True)
    # torchrun's own parser reads any `--run` as an abbreviation of its --run-path and stops: write --run-dir there
    t.add_argument("--run", "--run-dir", dest="run", type=Path, required=True, help="run folder (--run-dir alias)")
    t.add_argument("--steps", type=positive_int, default=None, help="train until this step (default: the preset's)")
    t.add_argument("--batch", type=positive_int, default=None, help="global batch (default: the preset's)")
    t.add_argument("--body", type=Path, default=None, help="body file (default: the one the dataset names)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--skip-bad", action="store_true",
                   help="train on the good items of a dataset with bad ones (listed), instead of refusing it")
    t.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads per process (default: torch's; use 1 on a busy shared machine)")
    from .evaluate import add_arguments

    add_arguments(commands.add_parser("evaluate", help="FID/KID, pose accuracy and consistency (docs/evaluation.md)"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_command("python -m training", lambda: _run(args))


def _run(args: argparse.Namespace) -> int | None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    if args.command in ("synth", "prepare"):
        args.width, args.height = args.size
    if args.command == "synth":
        from .synth import main as run

        return run(args)
    if args.command == "prepare":
        from .prepare import main as run

        return run(args)
    if args.command == "evaluate":
        from .evaluate import main as run

        return run(args)
    from .config import preset
    from .loop import train

    config = preset(args.preset)
    changes = {k: v for k, v in (("steps", args.steps), ("batch", args.batch)) if v is not None}
    train(config.replace(**changes), data=args.data, run=args.run, body_path=args.body, device=args.device,
          skip_bad=args.skip_bad)
    return None


if __name__ == "__main__":
    sys.exit(main())
