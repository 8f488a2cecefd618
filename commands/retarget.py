"""`python -m neural retarget CLIP.bvh`: retarget a mocap clip onto the free body, print how well it follows the
source (neural/retarget_metrics.py), and optionally save it as an AMASS-style .npz (Z up) that the add-on's Import
Motion, `python -m neural render --pose` and other SMPL tools read."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", type=Path, help="a .bvh motion capture clip (CMU, Mixamo, MotionBuilder or SMPL names)")
    parser.add_argument("--units", default="auto", help="the clip's length units: auto, m, cm, mm, inch, cmu")
    parser.add_argument("--bone-map", default="", help="extra matches, e.g. 'spine2=Chest, left_hand=' (see docs)")
    parser.add_argument("--no-ground", action="store_true", help="keep the clip's heights (no shift onto the floor)")
    parser.add_argument("--out", type=Path, help="write the SMPL motion as an AMASS-style .npz (poses (T, 72), "
                        "trans, betas, mocap_framerate; Z up)")


def run(args: argparse.Namespace) -> None:
    from neural.files import refuse_overwriting_input, write_atomic
    from neural.retarget import RetargetConfig, free_body_target, retarget_bvh, to_z_up
    from neural.retarget_metrics import measure
    from neural.retarget_names import parse_bone_map

    if args.out:
        refuse_overwriting_input(args.out, args.clip)
    config = RetargetConfig(bone_map=parse_bone_map(args.bone_map), units=args.units, ground=not args.no_ground)
    target = free_body_target()
    motion, source = retarget_bvh(args.clip, target, config)
    unmapped = ", ".join(motion.unmapped) or "none"
    print(f"{args.clip}: {len(motion.poses)} frames at {motion.fps:g} fps, {motion.convention} names, units "
          f"{motion.units}, SMPL metres per unit {motion.scale:.5f}, moved up {1000 * motion.ground_shift:.0f} mm onto "
          f"the floor; unmapped SMPL joints: {unmapped}")
    print(measure(source, motion, target).table())
    if args.out:
        poses, trans = to_z_up(motion, target.joints[0])
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a file object: np.savez would add .npz to a bare path
                np.savez(handle, poses=poses.reshape(len(poses), -1), trans=trans, betas=np.zeros(10),
                         mocap_framerate=np.array(motion.fps))

        write_atomic(args.out, save)
        print(f"wrote {args.out}")
