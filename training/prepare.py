"""`python -m training prepare`: a photo collection + SMPL fits → a dataset folder, with a validation report.

The paper trains on SHHQ photos with SMPL fits from a single-image regressor and 24-part label maps
(docs/architecture.md §Data); the official preprocessing was never released. Here, per image: read the photo, its fit
(training/fits.py), its mask and part map where given (`--masks`, `--parts`: PNGs named like the image; a part map holds
this project's labels 1 = background, 2..25 = dominant SMPL joint + 2, with 0 read as background). Where no part map is
given it is rasterised from the fit; where no mask is given it comes from the part map (or an RGBA photo's alpha). The
person is cropped to a 2:1 frame around the mask with a margin, resized to the dataset size, and composited on white;
the camera follows the crop. Unreadable, missing or non-finite inputs are listed by name in `report.json` and skipped —
or, with `strict`, refused before anything is written.

Memory stays bounded whatever the photo: a photo over MAX_PHOTO_PIXELS (a decompression bomb or a huge scan) is
skipped from its header, before decoding; a mask rasterised from the fit only serves to find the crop, so it is
rasterised at no more than MASK_PIXELS and the box scaled back; the part map is rasterised at the dataset's size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neural.body import BodyModel
from neural.camera import Camera
from neural.raster import parts_seen

from .crop import Crop, crop_box
from .data import DatasetWriter, resize_intrinsics, write_json_atomic
from .fits import Fit, FitError, normalize_fit, read_fits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_PHOTO_PIXELS = 64_000_000  # 64 MP decodes to 256 MB of RGBA; larger photos are skipped and listed
MASK_PIXELS = 1_000_000  # a mask rasterised from the fit, only to place the crop: ~0.1 % precision


def _cut(array: np.ndarray, crop: Crop, fill) -> np.ndarray:
    """The crop of an (H, W[, C]) array, padded with `fill` where the box leaves the image."""
    out = np.full((crop.height, crop.width, *array.shape[2:]), fill, dtype=array.dtype)
    y0, x0 = max(crop.top, 0), max(crop.left, 0)
    y1, x1 = min(crop.top + crop.height, array.shape[0]), min(crop.left + crop.width, array.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - crop.top:y1 - crop.top, x0 - crop.left:x1 - crop.left] = array[y0:y1, x0:x1]
    return out


def _resize(array: np.ndarray, width: int, height: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def _read_png_labels(path: Path, size: tuple[int, int], what: str) -> np.ndarray:
    with Image.open(path) as img:
        if img.size != size:
            raise ValueError(f"{what} {path.name} is {img.size[0]}×{img.size[1]}; the image is {size[0]}×{size[1]}")
        array = np.asarray(img)
    return array[..., 0] if array.ndim == 3 else array


def _rasterize_parts(body: BodyModel, fit: Fit, K: np.ndarray, world_to_camera: np.ndarray, width: int,
                     height: int) -> np.ndarray:
    """(H, W) uint8 part labels of the fit's body seen by the camera."""
    with torch.no_grad():
        posed = body(betas=torch.as_tensor(fit.betas[None, : body.num_betas]),
                     pose=torch.as_tensor(fit.pose[None]), transl=torch.as_tensor(fit.transl[None]))
        camera = Camera(K=torch.as_tensor(K, dtype=torch.float32)[None],
                        world_to_camera=torch.as_tensor(world_to_camera, dtype=torch.float32)[None],
                        width=width, height=height)
        _, depth = camera.project(posed.vertices)
        if not bool((depth > 0).all()):
            raise FitError("part of the fitted body is behind the camera")
        labels = parts_seen(posed, camera)
    return labels[0].numpy().astype(np.uint8)


def read_photo(path: Path) -> np.ndarray:
    """(H, W, 4) uint8 RGBA of a photo; ValueError for one over MAX_PHOTO_PIXELS, read from its header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here instead
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PHOTO_PIXELS:
                    raise ValueError(f"the photo is {w}×{h} ({w * h / 1e6:.0f} MP), over the "
                                     f"{MAX_PHOTO_PIXELS / 1e6:.0f} MP limit; downscale it (the dataset is far smaller)")
                img.load()
                return np.asarray(img.convert("RGBA"))
    except Image.DecompressionBombError as error:  # PIL's own refusal, at twice its warning limit
        raise ValueError(f"the photo is a decompression bomb by PIL's measure ({error})") from error


def _fit_crop(body: BodyModel, fit: Fit, W0: int, H0: int, *, margin: float) -> Crop:
    """The crop around the fit's body, from a mask rasterised at no more than MASK_PIXELS, scaled back to W0×H0."""
    s = min(1.0, (MASK_PIXELS / (W0 * H0)) ** 0.5)
    w, h = max(1, round(W0 * s)), max(1, round(H0 * s))
    K = resize_intrinsics(fit.K, w / W0, h / H0)
    mask = _rasterize_parts(body, fit, K, fit.world_to_camera, w, h) > 1
    if not mask.any():
        raise ValueError("the mask is empty (no person)")
    small = crop_box(mask, margin=margin)
    if s == 1.0:
        return small
    full = max(2, int(round(small.height * H0 / h / 2)) * 2)
    return Crop(left=int(round(small.left * W0 / w)), top=int(round(small.top * H0 / h)), width=full // 2, height=full)


def process_image(path: Path, raw_fit: dict, *, body: BodyModel, width: int, height: int, margin: float,
                  mask_path: Path | None, parts_path: Path | None) -> dict:
    """One photo → the arrays of a dataset item. Raises ValueError/OSError/FitError with a reason."""
    rgba = read_photo(path)
    H0, W0 = rgba.shape[:2]
    fit = normalize_fit(raw_fit, width=W0, height=H0)
    if len(fit.betas) > body.num_betas and np.abs(fit.betas[body.num_betas:]).max() > 1e-6:
        raise FitError(f"fit has {len(fit.betas)} betas; the body file has {body.num_betas} (pass --body with the "
                       "SMPL-format file the fits were made for)")
    parts0 = None
    if parts_path is not None:
        parts0 = _read_png_labels(parts_path, (W0, H0), "part map").astype(np.int64)
        if parts0.max() > 25:
            raise ValueError(f"part map {parts_path.name} holds label {parts0.max()}; labels are 1..25 (0 = background)")
        parts0 = np.maximum(parts0, 1).astype(np.uint8)
    mask0 = None  # None: the crop comes from a mask rasterised from the fit (_fit_crop)
    if mask_path is not None:
        mask0 = _read_png_labels(mask_path, (W0, H0), "mask") > 127
    elif parts0 is not None:
        mask0 = parts0 > 1
    elif rgba[..., 3].min() < 255:
        mask0 = rgba[..., 3] > 127
    if mask0 is not None and not mask0.any():
        raise ValueError("the mask is empty (no person)")
    crop = crop_box(mask0, margin=margin) if mask0 is not None else _fit_crop(body, fit, W0, H0, margin=margin)
    fit = normalize_fit(raw_fit, width=W0, height=H0, crop_height=crop.height)  # weak-perspective focal from crop
    K = fit.K.copy()
    K[0, 2] -= crop.left
    K[1, 2] -= crop.top
    K = resize_intrinsics(K, width / crop.width, height / crop.height)
    image = _resize(_cut(rgba[..., :3], crop, 255), width, height, Image.BILINEAR).astype(np.float32)
    if parts0 is not None:
        parts = _resize(_cut(parts0, crop, 1), width, height, Image.NEAREST)
    else:
        parts = _rasterize_parts(body, fit, K, fit.world_to_camera, width, height)
    if mask_path is not None or (parts0 is None and rgba[..., 3].min() < 255):
        mask = _resize(_cut(mask0.astype(np.uint8) * 255, crop, 0), width, height, Image.BILINEAR) > 127
    else:  # the mask comes from the part map, at the final resolution
        mask = parts > 1
    alpha = mask[..., None].astype(np.float32)
    image = np.clip(image * alpha + 255 * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return dict(image=image, mask=mask, parts=parts, betas=fit.betas[: body.num_betas], pose=fit.pose,
                transl=fit.transl, K=K, world_to_camera=fit.world_to_camera)


def _by_stem(folder: Path | None, suffixes=(".png",)) -> dict[str, Path]:
    if folder is None:
        return {}
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def prepare(*, images: Path, fits: Path | None, out: Path, body_path: Path, height: int, width: int,
            masks: Path | None = None, parts: Path | None = None, margin: float = 0.05, strict: bool = False,
            log=print) -> dict:
    """Build a dataset folder; returns the report {"written", "skipped": {name: reason}, ...} (also report.json).
    Without `fits`, every person in the photos is detected and fitted first (training/photos, into out/photo_fits)."""
    body = BodyModel.load(body_path)
    # first, so that an --out that is a file or holds a dataset is refused before any photo is processed
    writer = DatasetWriter(out, height=height, width=width, body_fingerprint=body.fingerprint,
                           body_file=str(Path(body_path).resolve()), num_betas=body.num_betas, source="prepare")
    photos = _by_stem(images, IMAGE_SUFFIXES)
    if not photos:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")
    if fits is None:
        if masks is not None or parts is not None:
            raise ValueError("--masks and --parts go with --fits; without --fits masks come from the detector and "
                             "part maps from the fitted bodies")
        from .photos.pipeline import detect_and_fit

        found = detect_and_fit(photos, body=body, work=Path(out) / "photo_fits", log=log)
        photos, raw_fits, problems, mask_files = found.images, found.fits, dict(found.problems), found.masks
    else:
        raw_fits, problems = read_fits(fits)
        mask_files = _by_stem(masks)
    part_files = _by_stem(parts)
    prefix = "fit unusable: " if fits is not None else ""
    skipped = {name: f"{prefix}{problems.pop(name)}" for name in list(problems) if name in photos}
    skipped.update({name: "no fit for this image" for name in photos if name not in raw_fits and name not in skipped})
    for name, folder, files in (("mask", masks, mask_files), ("part map", parts, part_files)):
        if folder is not None:
            skipped.update({n: f"no {name} in {folder}" for n in photos if n not in files and n not in skipped})
    orphans = sorted(set(raw_fits) - set(photos)) + sorted(problems)
    items = {}
    for name in sorted(set(photos) - set(skipped)):
        try:
            items[name] = process_image(photos[name], raw_fits[name], body=body, width=width, height=height,
                                        margin=margin, mask_path=mask_files.get(name), parts_path=part_files.get(name))
        except (FitError, ValueError, OSError, MemoryError) as error:  # PIL raises OSError subclasses on bad files
            skipped[name] = f"{type(error).__name__}: {error}" if not isinstance(error, FitError) else str(error)
    report = {"images": len(photos), "written": 0 if strict and skipped else len(items),
              "skipped": dict(sorted(skipped.items())), "fits_without_image": orphans}
    if strict and skipped:
        listing = "\n".join(f"  {k}: {v}" for k, v in sorted(skipped.items()))
        raise ValueError(f"--strict: {len(skipped)} of {len(photos)} images have problems; nothing written:\n{listing}")
    for name, item in items.items():
        writer.add(name, **item)
    writer.finish(extra={"images": str(images), "fits": str(fits) if fits else "detected", "margin": margin})
    write_json_atomic(Path(out) / "report.json", report)
    log(f"prepare: wrote {len(items)} of {len(photos)} images to {out}; skipped {len(skipped)}"
        + "".join(f"\n  {k}: {v}" for k, v in sorted(skipped.items())))
    return report


def main(args) -> None:
    """The `prepare` command (errors propagate to the command line's one error block, neural/cli.py)."""
    prepare(images=args.images, fits=args.fits, out=args.out, body_path=args.body, height=args.height,
            width=args.width, masks=args.masks, parts=args.parts, margin=args.margin, strict=args.strict)

