"""Contact sheet of a mocap clip put on the character (docs/images/mocap_cmu_01_01.png): evenly spread frames of a
BVH, top row the source skeleton (grey) with the retargeted SMPL skeleton over it (red), bottom row the engine's
render of those frames through `python -m neural render --pose` with the default model.

    python tools/mocap_sheet.py .cache/assimp-testmodels/usr/share/assimp/models/BVH/01_01.bvh \
        --out docs/images/mocap_cmu_01_01.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from commands.demo_sheet import contact_sheet, on_background, pick
from neural.__main__ import main as neural_main
from neural.bvh import BvhMotion, read_bvh, write_bvh
from neural.retarget import _body_axes, free_body_target, retarget, smpl_joints, source_from_bvh, world_positions
from neural.skeleton import PARENTS


def stick_figures(source, motion, target, frames: list[int], size: tuple[int, int]) -> list:
    """Front views (orthographic, +Z towards the viewer) of both skeletons at `frames`, centred on the pelvis."""
    from PIL import Image, ImageDraw

    index = {n: i for i, n in enumerate(source.names)}
    m = [index[b] if b is not None else None for b in motion.bones]
    S = world_positions(source, _body_axes(source.rest, m, source.label), motion.scale, motion.metres_per_unit, m[0])
    S[..., 1] += motion.ground_shift
    X = smpl_joints(motion.poses, motion.trans, target.joints)
    width, height = size
    pixels = height / 2.2  # metres → pixels: 2.2 m fill the tile's height
    tiles = []
    for f in frames:
        image = Image.new("RGB", size, (255, 255, 255))
        draw = ImageDraw.Draw(image)
        centre = X[f, 0]

        def px(p):
            return (width / 2 + (p[0] - centre[0]) * pixels, height * 0.45 - (p[1] - centre[1]) * pixels)

        floor = px(np.array([0, 0, 0]))[1]
        draw.line([(0, floor), (width, floor)], fill=(200, 200, 200))
        for j, p in enumerate(source.parents):
            if p >= 0:
                draw.line([px(S[f, p]), px(S[f, j])], fill=(150, 150, 150), width=3)
        for k, p in enumerate(PARENTS):
            if p >= 0:
                draw.line([px(X[f, p]), px(X[f, k])], fill=(220, 30, 30), width=1)
        tiles.append(image)
    return tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="96x192")
    args = parser.parse_args()
    clip = read_bvh(args.clip)
    frames = pick(len(clip.values) - 1, args.frames)
    frames = [f + 1 for f in frames]  # frame 0 of a CMU clip is its calibration T-pose
    target = free_body_target()
    source = source_from_bvh(clip)
    motion = retarget(source, target)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "frames.bvh"
        write_bvh(short, BvhMotion(path=None, skeleton=clip.skeleton, values=clip.values[[0] + frames],
                                   frame_time=clip.frame_time))
        out = Path(tmp) / "render"
        if neural_main(["render", "--pose", str(short), "--frames", "1:", "--size", args.size, "--device", "cpu",
                        "--out", str(out)]) != 0:
            raise SystemExit("render failed")
        renders = [on_background(p) for p in sorted(out.glob("frame_*_yaw+0.png"))]
    sticks = stick_figures(source, motion, target, frames, (width, height))
    label = f"{args.clip.stem}: source (grey), SMPL (red)"
    contact_sheet([(label, sticks), ("HumanGAN render", renders)], args.out)
    print(f"wrote {args.out} (frames {frames})")


if __name__ == "__main__":
    main()
