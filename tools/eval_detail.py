"""Detail beyond the model's resolution, measured (docs/detail.md): the default model rendered at k× its 64×32
against the synthetic collection's ground truth rendered at that resolution, for three ways of getting there:

- stretch: the model's own 64×32 image, bilinearly upsampled k× (what the renderer did before detail);
- detail, style map at the model's size: the backbone evaluated at k× the pixels, the pose style map rendered at
  its own 32×16 and upsampled by the backbone;
- detail, style map at k×: the pose field rendered at k× its resolution too.

Metrics: FID / KID (Inception features of `count` samples vs `count` real images of the collection), the
edge-sharpness ratio (mean squared image gradient of the generated images ÷ that of the ground truth, over the
same items), pose mIoU (with --parser: the judge parser's labels on the generated images against the conditioning
body's rasterised part map), and view consistency (training/metrics/protocol.measure_consistency: |Δ colour| of co-visible body
points across ±30° yaw, 8-bit levels).

    python tools/eval_detail.py --data runs/eval2x --factor 2 --out runs/detail2x.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from neural import checkpoint
from neural.body import BodyModel, free_body_path
from neural.renderer import default_model_path
from training.data import PhotoDataset
from training.metrics.fid import InceptionFeatures
from training.parser import load_parser
from training.metrics.protocol import Protocol, _camera, _items, _pose, item_order, measure_consistency, \
    measure_fid_and_pose

OPTIONS = ("stretch", "detail-style-model", "detail-style-crop")


def render_fn(generator, option: str, factor: int, psi: float, seed: int):
    @torch.no_grad()
    def render(people, posed, camera):
        z = torch.cat([generator.sample_z(seed + k) for k in people])
        if option == "stretch":
            native = camera.resized(generator.config.width, generator.config.height)
            image = generator(z, posed, native, psi=psi).image
            return F.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False).clamp(-1, 1)
        styles = generator.prepare(z, posed, camera, psi=psi, style_scale=factor if option.endswith("crop") else 1)
        return generator.synthesize(styles).clamp(-1, 1)
    return render


def gradient_energy(images: torch.Tensor) -> float:
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return float(dx.square().mean() + dy.square().mean())


def sharpness(render, dataset, body, count: int) -> float:
    order = item_order(len(dataset), 0)[:count]
    fake, real = [], []
    for start in range(0, count, 16):
        data = _items(dataset, order[start:start + 16])
        posed = _pose(body, data["betas"], data["pose"], data["transl"])
        camera = _camera(data, dataset.width, dataset.height, "cpu")
        fake.append(gradient_energy(render(list(range(start, start + len(posed.transl))), posed, camera)))
        real.append(gradient_energy(data["image"]))
    return float(np.mean(fake) / np.mean(real))


def pose_miou(render, dataset, body, parser, count: int) -> float:
    """The judge parser's mIoU on `count` generated images against their bodies' rasterised part maps."""
    from neural.raster import parts_seen
    from training.metrics.pose_accuracy import Confusion

    order = item_order(len(dataset), 0)[:count]
    confusion = Confusion.empty()
    for start in range(0, count, 16):
        data = _items(dataset, order[start:start + 16])
        posed = _pose(body, data["betas"], data["pose"], data["transl"])
        camera = _camera(data, dataset.width, dataset.height, "cpu")
        images = render(list(range(start, start + len(posed.transl))), posed, camera)
        target = parts_seen(posed, camera)
        confusion = confusion + Confusion.of(parser.predict(images), target)
    return confusion.miou()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--factor", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--people", type=int, default=16)
    p.add_argument("--options", nargs="+", default=list(OPTIONS))
    p.add_argument("--pose-only", action="store_true", help="only pose mIoU (needs --parser), no FID or consistency")
    p.add_argument("--parser", type=Path, default=None,
                   help="judge parser (.safetensors) for pose mIoU (it resizes the images to its own 64x128)")
    args = p.parse_args()
    torch.set_num_threads(1)
    generator, _ = checkpoint.load(default_model_path())
    generator.eval()
    dataset = PhotoDataset(args.data)
    body = BodyModel.load(free_body_path())  # the synthetic collection's body and the default model's
    protocol = Protocol(count=args.count, psi=0.7, people=args.people, kid_subsets=20,
                        kid_subset_size=min(100, args.count))
    inception = InceptionFeatures(device="cpu")
    parser = None if args.parser is None else load_parser(args.parser)[0]
    results, real_features = {}, None
    if args.pose_only:
        if parser is None:
            raise SystemExit("--pose-only needs --parser")
        results = {option: pose_miou(render_fn(generator, option, args.factor, protocol.psi, protocol.seed), dataset,
                                     body, parser, args.count) for option in args.options}
        print(results)
        args.out.write_text(json.dumps({"factor": args.factor, "pose_miou": results}, indent=1))
        return
    for option in args.options:
        start = time.perf_counter()
        render = render_fn(generator, option, args.factor, protocol.psi, protocol.seed)
        metrics, real_features = measure_fid_and_pose(render, dataset, body, protocol, inception=inception,
                                                      parser=parser, real_features=real_features, log=None)
        metrics["sharpness"] = sharpness(render, dataset, body, min(64, args.count))
        metrics["view_consistency"] = measure_consistency(render, dataset, body, protocol, log=None)[
            "view_consistency"]
        metrics["seconds"] = time.perf_counter() - start
        results[option] = metrics
        print(option, {k: round(v, 4) for k, v in metrics.items()}, flush=True)
    truth = measure_consistency(_truth(dataset, body), dataset, body, protocol, log=None)["view_consistency"]
    results["ground-truth"] = {"view_consistency": truth, "sharpness": 1.0}
    print("ground truth view", round(truth, 3))
    args.out.write_text(json.dumps({"factor": args.factor, "size": [dataset.height, dataset.width],
                                    "protocol": protocol.to_dict(), "results": results}, indent=1))


def _truth(dataset, body):
    from training.metrics.protocol import ground_truth_render

    return ground_truth_render(dataset, item_order(len(dataset), 0), body)


if __name__ == "__main__":
    main()
