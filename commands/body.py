"""`python -m neural body convert SRC.pkl DST.npz` (the official SMPL .pkl, chumpy and sparse matrices, → our .npz,
without chumpy: neural/body_convert.py) and `python -m neural body info FILE` (vertex count, betas, fingerprint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neural.body import BodyModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="body_command", required=True)
    convert = commands.add_parser("convert", help="official SMPL .pkl (chumpy, sparse) → .npz, without chumpy")
    convert.add_argument("src", type=Path)
    convert.add_argument("dst", type=Path)
    info = commands.add_parser("info", help="vertex count, betas, fingerprint of a body file")
    info.add_argument("file", type=Path)


def info(path: Path) -> str:
    """One line describing a body file (.npz, or an official .pkl read without chumpy)."""
    if path.suffix == ".pkl":
        from neural.body_convert import read_smpl_pickle

        body = BodyModel(arrays=read_smpl_pickle(path), source=str(path))
    else:
        body = BodyModel.load(path)
    return (f"{path}: {body.num_vertices} vertices, {len(body.faces)} faces, {body.num_betas} betas, "
            f"fingerprint {body.fingerprint}")


def run(args: argparse.Namespace) -> None:
    if args.body_command == "convert":
        from neural.body_convert import convert_smpl_pickle

        convert_smpl_pickle(args.src, args.dst)
        print(info(args.dst))
    else:
        print(info(args.file))
