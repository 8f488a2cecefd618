"""`python -m neural import-official SRC.pth DST.safetensors --body smpl.npz`: the released official 3DHumanGAN
weights → our checkpoint format (the import itself: neural/official.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neural.generator import TRUNCATION_SEED
from neural.official import RELEASED_FILE, import_official


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help=f"official generator state dict (.pth), e.g. {RELEASED_FILE}")
    parser.add_argument("destination", type=Path, help="checkpoint to write (.safetensors)")
    parser.add_argument("--body", type=Path, default=None,
                        help="SMPL body .npz (from `python -m neural body convert SMPL_NEUTRAL.pkl smpl.npz`)")
    parser.add_argument("--truncation-seed", type=int, default=TRUNCATION_SEED,
                        help="seed of the 10,000 latents whose mean is the truncation centre")


def run(args: argparse.Namespace) -> None:
    """Import and print the summary (errors propagate as ValueError)."""
    print(import_official(args.source, args.destination, body=args.body,
                          truncation_seed=args.truncation_seed).text())
