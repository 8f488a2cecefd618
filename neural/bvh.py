"""Read and write BVH motion capture (Biovision hierarchy), numpy only: the reader behind the mocap retargeting of
neural/retarget.py, so that `python -m neural render --pose walk.bvh` and the add-on's motion import need no Blender
importer.

A BVH file has a HIERARCHY (one ROOT, nested JOINTs with an OFFSET from their parent, the CHANNELS they animate,
and `End Site` offsets that give leaf bones a length) and a MOTION block (`Frames: T`, `Frame Time: dt` seconds,
then T rows of channel values, in the order the channels were declared, depth first). Conventions read here, the
ones Blender's importer and MotionBuilder use:
- rotations are degrees, applied in the order listed: channels `Zrotation Xrotation Yrotation` mean
  R = Rz·Rx·Ry (each about the joint's parent-aligned axes), and the joint's global frame is its parent's times R;
- position channels, where a joint has them (usually only the root), replace that component of its OFFSET;
- the rest pose is every channel at zero: the skeleton as its offsets draw it.

Every error names the file and the line (and for channel values the frame, bone and channel) and says what was
expected, so a broken export can be found in an editor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import write_text_atomic

ROTATIONS = ("Xrotation", "Yrotation", "Zrotation")
POSITIONS = ("Xposition", "Yposition", "Zposition")


class BvhError(ValueError):
    """A BVH file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, kw_only=True)
class BvhSkeleton:
    """A BVH hierarchy. names/parents: J joints depth first, root first (parent −1); offsets: (J, 3) from the
    parent's joint, file units; channels: per joint, the channel names in file order; end_sites: (J, 3) the End Site
    offset of a joint that has one, NaN rows elsewhere."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    end_sites: np.ndarray

    @property
    def columns(self) -> tuple[tuple[int, ...], ...]:
        """Per joint, the column of each of its channels in a MOTION row."""
        out, start = [], 0
        for names in self.channels:
            out.append(tuple(range(start, start + len(names))))
            start += len(names)
        return tuple(out)

    @property
    def channel_count(self) -> int:
        return sum(len(c) for c in self.channels)


@dataclass(frozen=True, kw_only=True)
class BvhMotion:
    """A BVH clip: skeleton, values (T, C) channel values as in the file (degrees, file units), frame_time (s);
    notes: what the reader tolerated (e.g. rows beyond the declared frame count), for the user's report."""

    path: Path | None
    skeleton: BvhSkeleton
    values: np.ndarray
    frame_time: float
    notes: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        """1 / frame_time, snapped to a whole rate within 10 ppm: files round the frame time (0.0083333 s is 120
        fps, not 120.0005; unsnapped, a long clip loses its last frame when resampled to 120)."""
        rate = 1.0 / self.frame_time
        return float(round(rate)) if abs(rate - round(rate)) < 1e-5 * rate else rate

    def local_rotations(self) -> np.ndarray:
        """(T, J, 3, 3) each joint's rotation relative to its parent (identity at rest)."""
        T, J = len(self.values), len(self.skeleton.names)
        out = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
        for j, (names, cols) in enumerate(zip(self.skeleton.channels, self.skeleton.columns)):
            for name, col in zip(names, cols):
                if name in ROTATIONS:
                    out[:, j] = out[:, j] @ axis_rotation(ROTATIONS.index(name), np.radians(self.values[:, col]))
        return out

    def local_translations(self) -> np.ndarray:
        """(T, J, 3) each joint's position in its parent's frame: the OFFSET, with position channels replacing."""
        out = np.repeat(self.skeleton.offsets[None], len(self.values), 0)
        for j, (names, cols) in enumerate(zip(self.skeleton.channels, self.skeleton.columns)):
            for name, col in zip(names, cols):
                if name in POSITIONS:
                    out[:, j, POSITIONS.index(name)] = self.values[:, col]
        return out

    def forward_kinematics(self) -> tuple[np.ndarray, np.ndarray]:
        """Global joint positions (T, J, 3) (file units and world) and rotations (T, J, 3, 3) (identity at rest)."""
        local_r, local_t = self.local_rotations(), self.local_translations()
        positions, rotations = np.zeros_like(local_t), np.zeros_like(local_r)
        for j, p in enumerate(self.skeleton.parents):
            if p < 0:
                positions[:, j], rotations[:, j] = local_t[:, j], local_r[:, j]
            else:
                positions[:, j] = positions[:, p] + (rotations[:, p] @ local_t[:, j, :, None])[..., 0]
                rotations[:, j] = rotations[:, p] @ local_r[:, j]
        return positions, rotations


def axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations by angle (...,) radians about coordinate axis 0 (X), 1 (Y) or 2 (Z)."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((*np.shape(angle), 3, 3))
    i, j = (axis + 1) % 3, (axis + 2) % 3
    out[..., axis, axis] = 1
    out[..., i, i], out[..., i, j], out[..., j, i], out[..., j, j] = c, -s, s, c
    return out


def matrix_to_euler(R: np.ndarray, order: tuple[int, int, int]) -> np.ndarray:
    """(..., 3, 3) → (..., 3) angles in radians with R = R_order[0](a)·R_order[1](b)·R_order[2](c); order is a
    permutation of the axes (0, 1, 2). b is in [−π/2, π/2]; at b = ±π/2 (gimbal lock) a takes the shared angle."""
    i, j, k = order
    e = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for the cyclic orders XYZ, YZX, ZXY
    b = np.arcsin(np.clip(e * R[..., i, k], -1, 1))
    a = np.arctan2(-e * R[..., j, k], R[..., k, k])
    c = np.arctan2(-e * R[..., i, j], R[..., i, i])
    locked = np.abs(e * R[..., i, k]) > 1 - 1e-12
    a = np.where(locked, np.arctan2(e * R[..., k, j], R[..., j, j]), a)
    return np.stack([a, b, np.where(locked, 0.0, c)], -1)


def read_bvh(path: str | Path) -> BvhMotion:
    """Parse a .bvh file (FileNotFoundError if missing; BvhError naming the file, line, bone and channel)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BVH file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as error:
        raise BvhError(f"BVH file {path} is not text (byte {error.start} is not UTF-8); export it as a text .bvh")
    tokens = [(word, n) for n, line in enumerate(text.splitlines(), 1) for word in line.split()]
    return _Parser(path, tokens).motion()


class _Parser:
    """Recursive descent over (word, line number) tokens."""

    def __init__(self, path: Path, tokens: list[tuple[str, int]]):
        self.path, self.tokens, self.at = path, tokens, 0
        self.names: list[str] = []
        self.parents: list[int] = []
        self.offsets: list[list[float]] = []
        self.channels: list[tuple[str, ...]] = []
        self.ends: dict[int, list[float]] = {}

    def fail(self, message: str, line: int | None = None) -> BvhError:
        if line is None:
            line = self.tokens[min(self.at, len(self.tokens) - 1)][1] if self.tokens else 1
        return BvhError(f"BVH file {self.path}, line {line}: {message}")

    def next(self, what: str) -> tuple[str, int]:
        if self.at >= len(self.tokens):
            raise self.fail(f"the file ends where {what} was expected; the export is cut short")
        self.at += 1
        return self.tokens[self.at - 1]

    def expect(self, *words: str) -> int:
        word, line = self.next(" ".join(words))
        if word.upper() not in {w.upper() for w in words}:
            raise self.fail(f"expected {' or '.join(repr(w) for w in words)}, found {word!r}", line)
        return line

    def number(self, what: str) -> float:
        word, line = self.next(what)
        try:
            value = float(word)
        except ValueError:
            raise self.fail(f"{what} must be a number, found {word!r}", line) from None
        if not math.isfinite(value):
            raise self.fail(f"{what} is {word}; offsets and counts must be finite numbers", line)
        return value

    def joint(self, parent: int) -> None:
        name, line = self.next("a joint name")
        if name in self.names:
            raise self.fail(f"joint name {name!r} appears twice; every joint needs its own name", line)
        index = len(self.names)
        self.names.append(name)
        self.parents.append(parent)
        self.expect("{")
        self.expect("OFFSET")
        self.offsets.append([self.number(f"OFFSET of joint {name!r}") for _ in range(3)])
        self.expect("CHANNELS")
        count_word, count_line = self.next(f"the channel count of joint {name!r}")
        if not count_word.isdigit():
            raise self.fail(f"CHANNELS of joint {name!r} must begin with a count, found {count_word!r}", count_line)
        names = tuple(self.next(f"a channel of joint {name!r}") for _ in range(int(count_word)))
        for channel, channel_line in names:
            if channel not in ROTATIONS + POSITIONS:
                raise self.fail(f"joint {name!r} has channel {channel!r}; channels are "
                                f"{', '.join(POSITIONS + ROTATIONS)}", channel_line)
        self.channels.append(tuple(c for c, _ in names))
        while True:
            word, line = self.next(f"JOINT, End Site or '}}' closing joint {name!r}")
            if word == "}":
                return
            if word.upper() == "JOINT":
                self.joint(index)
            elif word.upper() == "END":
                self.expect("Site")
                self.expect("{")
                self.expect("OFFSET")
                self.ends[index] = [self.number(f"End Site OFFSET of joint {name!r}") for _ in range(3)]
                self.expect("}")
            else:
                raise self.fail(f"expected JOINT, End Site or '}}' in joint {name!r}, found {word!r}", line)

    def motion(self) -> BvhMotion:
        self.expect("HIERARCHY")
        self.expect("ROOT")
        self.joint(-1)
        word, line = self.next("MOTION")
        if word.upper() == "ROOT":
            raise self.fail("a second ROOT; only single-skeleton BVH files are read (export one character)", line)
        if word.upper() != "MOTION":
            raise self.fail(f"expected MOTION after the hierarchy, found {word!r}", line)
        self.expect("Frames:")
        frames = self.number("the frame count after 'Frames:'")
        self.expect("Frame")
        self.expect("Time:")
        frame_time = self.number("the frame time in seconds after 'Frame Time:'")
        if frames != int(frames) or frames < 1:
            raise self.fail(f"the MOTION block declares {frames:g} frames; a clip needs at least one frame")
        if not frame_time > 0:
            raise self.fail(f"'Frame Time:' is {frame_time:g} s; it must be > 0 (e.g. 0.0083333 for 120 fps)")
        skeleton = BvhSkeleton(
            names=tuple(self.names), parents=tuple(self.parents), offsets=np.array(self.offsets, dtype=np.float64),
            channels=tuple(self.channels),
            end_sites=np.array([self.ends.get(j, [np.nan] * 3) for j in range(len(self.names))], dtype=np.float64))
        values, notes = self.values(skeleton, int(frames))
        return BvhMotion(path=self.path, skeleton=skeleton, values=values, frame_time=frame_time, notes=notes)

    def values(self, skeleton: BvhSkeleton, frames: int) -> np.ndarray:
        rest = self.tokens[self.at:]
        C = skeleton.channel_count
        owner = [(skeleton.names[j], c) for j, names in enumerate(skeleton.channels) for c in names]

        def where(index: int) -> str:
            bone, channel = owner[index % C] if C else ("-", "-")
            return f"frame {index // C} (counted from 0), bone {bone!r}, channel {channel}"

        if len(rest) < frames * C:
            last = rest[-1][1] if rest else self.tokens[self.at - 1][1]
            raise self.fail(f"the MOTION block declares {frames} frames of {C} channels, but the file ends after "
                            f"{len(rest) // max(C, 1)} whole frames (the next value expected: {where(len(rest))}); "
                            "the file is truncated, re-export it or fix 'Frames:'", last)
        notes = ()
        if len(rest) > frames * C:
            if len(rest) % C:  # some exporters write a row more than they declare; a partial row is damage
                raise self.fail(f"{len(rest) - frames * C} values after the {frames} frames × {C} channels that "
                                "'Frames:' declares, not a whole number of frames; fix the frame count",
                                rest[frames * C][1])
            notes = (f"{len(rest) // C - frames} frame(s) after the {frames} that 'Frames:' declares were ignored",)
            rest = rest[:frames * C]
        flat = np.empty(len(rest))
        for n, (word, line) in enumerate(rest):
            try:
                flat[n] = float(word)
            except ValueError:
                raise self.fail(f"{word!r} is not a number ({where(n)})", line) from None
        bad = np.flatnonzero(~np.isfinite(flat))
        if len(bad):
            raise self.fail(f"{rest[bad[0]][0]} in {where(int(bad[0]))}; clean or trim the clip", rest[bad[0]][1])
        return flat.reshape(frames, C), notes


def write_bvh(path: str | Path, motion: BvhMotion, *, precision: int = 6) -> Path:
    """Write a BvhMotion as text (tabs for nesting, one row per frame); returns the path. Joints are written depth
    first, as the format requires (a skeleton in another order, e.g. SMPL's, reads back in that order)."""
    sk = motion.skeleton
    children = {j: [c for c, p in enumerate(sk.parents) if p == j] for j in range(len(sk.names))}
    lines = ["HIERARCHY"]
    written: list[int] = []

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        written.append(j)
        lines.append(f"{pad}{'ROOT' if sk.parents[j] < 0 else 'JOINT'} {sk.names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET {' '.join(f'{v:.{precision}f}' for v in sk.offsets[j])}")
        lines.append(f"{pad}\tCHANNELS {len(sk.channels[j])} {' '.join(sk.channels[j])}".rstrip())
        for c in children[j]:
            emit(c, depth + 1)
        if not np.isnan(sk.end_sites[j]).any():
            lines.extend([f"{pad}\tEnd Site", pad + "\t{",
                          f"{pad}\t\tOFFSET {' '.join(f'{v:.{precision}f}' for v in sk.end_sites[j])}", pad + "\t}"])
        lines.append(pad + "}")

    roots = [j for j, p in enumerate(sk.parents) if p < 0]
    if len(roots) != 1:
        raise ValueError(f"a BVH skeleton has one root; this one has {len(roots)}: {[sk.names[j] for j in roots]}")
    emit(roots[0], 0)
    columns = [c for j in written for c in sk.columns[j]]
    lines += ["MOTION", f"Frames: {len(motion.values)}", f"Frame Time: {motion.frame_time:.9g}"]
    lines += [" ".join(f"{v:.{precision}f}" for v in row) for row in motion.values[:, columns]]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def channel_values(skeleton: BvhSkeleton, rotations: np.ndarray, root_position: np.ndarray) -> np.ndarray:
    """MOTION rows (T, C) for local rotations (T, J, 3, 3) and the root's position channels (T, 3); every joint
    needs its three rotation channels (any order); position channels of other joints are written as their OFFSET."""
    T = len(rotations)
    values = np.zeros((T, skeleton.channel_count))
    for j, (names, cols) in enumerate(zip(skeleton.channels, skeleton.columns)):
        rot = [n for n in names if n in ROTATIONS]
        if len(rot) != 3:
            raise ValueError(f"joint {skeleton.names[j]!r} has rotation channels {rot}; writing needs all three")
        angles = np.degrees(matrix_to_euler(rotations[:, j], tuple(ROTATIONS.index(n) for n in rot)))
        position = root_position if skeleton.parents[j] < 0 else np.repeat(skeleton.offsets[j][None], T, 0)
        for name, col in zip(names, cols):
            values[:, col] = angles[:, rot.index(name)] if name in ROTATIONS else position[:, POSITIONS.index(name)]
    return values
