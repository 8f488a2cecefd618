"""The training loop: `train(config, data, run)` (paper §3.4; docs/architecture.md §Optimisation).

Each iteration is one discriminator step then one generator step on the same real minibatch; what they optimise
(cameras, targets, the named loss terms) is training/objective.py's, and the loop logs the terms it returns.
Adam (0, 0.9) with the pose field at `field_lr_scale` (paper ×0.05), gradient clipping 1.0, EMA of G with warm-up,
density noise annealed to 0, float16 AMP on CUDA, data-parallel over `torchrun` processes. Each step's randomness
is a pure function of (seed, step, rank) (`_rng`), so a resumed run is bitwise the uninterrupted one.

One deliberate difference from the official code: the discriminator's real-image target is the photo's part map or
(p = ½) its fit's part map rasterised from the *photo's* camera, never from the rotated camera that the official
code also uses there (a label/image mismatch on half of the steps, docs/architecture.md §Segmentation loss).

The run folder: training_options.json, stats.jsonl, samples/*.png, checkpoints (training/state.py). Running the same
command again resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from neural.body import BodyModel, free_body_path
from neural.checkpoint import save as save_generator
from neural.files import write_text_atomic
from neural.generator import Generator

from . import distributed, state
from .checks import LossWatch, check_weights
from .config import TrainingConfig
from .data import BatchSampler, PhotoDataset, read_manifest, write_json_atomic
from .discriminator import NUM_CLASSES, UNetDiscriminator
from .memory import check_training
from .objective import Objective
from .validate import listing
from .samples import SampleSet, write_grid


def load_body(manifest: dict, body_path: Path | None) -> tuple[BodyModel, Path]:
    """The dataset's body model: `body_path`, else the file the manifest names, else the free body; its fingerprint
    must match the dataset's."""
    want = manifest["body"]["fingerprint"]
    candidates = [Path(body_path)] if body_path else [Path(manifest["body"]["file"]), free_body_path()]
    for path in candidates:
        if path.is_file():
            body = BodyModel.load(path)
            if body.fingerprint == want:
                return body, path
            if body_path:
                raise ValueError(f"body file {path} has fingerprint {body.fingerprint}; the dataset was made with "
                                 f"{want} ({manifest['body']['file']}). Pass that file with --body")
    raise FileNotFoundError(f"the dataset's body file {manifest['body']['file']} (fingerprint {want}) was not found; "
                            "pass it with --body")


def usable_dataset(data: Path, gc, *, skip_bad: bool, log) -> PhotoDataset:
    """The dataset at the generator's resolution, after checking every item; bad ones refused or left out."""
    dataset = PhotoDataset(data, height=gc.height, width=gc.width)
    bad = dataset.bad_items()
    if bad and (not skip_bad or len(bad) == len(dataset)):
        what = "every item is bad" if skip_bad else "train with --skip-bad to leave them out, or repair them"
        raise ValueError(f"dataset {data}: {len(bad)} of {len(dataset)} items are bad ({what}):\n{listing(bad)}")
    if bad:
        log(f"--skip-bad: training without {len(bad)} of {len(dataset)} items of {data}:\n{listing(bad)}")
        dataset = PhotoDataset(data, height=gc.height, width=gc.width, exclude=bad)
    return dataset


def resolve_run(run: Path, config: TrainingConfig, data: Path, main: bool) -> None:
    """Create the run folder with training_options.json, or check that a resumed run trains the same thing."""
    options = json.loads(json.dumps({"config": config.to_dict(), "data": str(Path(data).resolve())}))
    path = run / "training_options.json"
    if run.exists() and not run.is_dir():
        raise NotADirectoryError(f"--run {run} is a file, not a run folder; pass a new or existing folder")
    if path.exists():
        try:
            old = json.loads(path.read_text())
            old["config"], old["data"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is damaged ({type(error).__name__}: {error}); restore it from a copy, or "
                             "choose a new --run folder") from error
        old_config = {**old["config"], "steps": None}
        if old_config != {**options["config"], "steps": None} or old["data"] != options["data"]:
            raise ValueError(f"{run} holds a run with other options (see {path}); resume with the same preset and "
                             "data, or choose a new --run folder")
    if main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "samples").mkdir(exist_ok=True)
        write_json_atomic(path, options)


def _rng(config: TrainingConfig, step: int, rank: int) -> torch.Generator:
    """All randomness of one step on one process: a pure function of (seed, step, rank), so resuming is exact."""
    return torch.Generator().manual_seed((config.seed * 1_000_003 + step) * 1009 + rank)


def _optimizers(config: TrainingConfig, G: Generator, D: UNetDiscriminator):
    groups = []
    for name, params in G.parameter_groups().items():
        scale = config.field_lr_scale if name.startswith("pose") else 1.0
        groups.append({"params": params, "lr": config.g_lr * scale, "base_lr": config.g_lr * scale, "name": name})
    g_opt = torch.optim.Adam(groups, betas=config.betas, eps=1e-8)
    d_opt = torch.optim.Adam([{"params": list(D.parameters()), "lr": config.d_lr, "base_lr": config.d_lr}],
                             betas=config.betas, eps=1e-8)
    return g_opt, d_opt


def _set_lr(config: TrainingConfig, step: int, *optimizers: torch.optim.Optimizer) -> None:
    factor = 0.5 if config.lr_drop_step is not None and step >= config.lr_drop_step else 1.0
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor


def _update(module, optimizer, scaler, loss: Tensor, config: TrainingConfig, world: int) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    distributed.all_reduce_gradients(module, world)
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], config.grad_clip)
    scaler.step(optimizer)
    scaler.update()


@torch.no_grad()
def update_ema(ema: Generator, G: torch.nn.Module, step: int, decay: float) -> None:
    """EMA of the parameters with warm-up min(decay, (1 + n) / (10 + n)); buffers (BN statistics) are copied."""
    beta = min(decay, (1 + step) / (10 + step))
    params = dict(G.named_parameters())
    for name, p in ema.named_parameters():
        p.lerp_(params[name].detach(), 1 - beta)
    buffers = dict(G.named_buffers())
    for name, b in ema.named_buffers():
        b.copy_(buffers[name])


def train(config: TrainingConfig, *, data: Path, run: Path, body_path: Path | None = None, device: str = "auto",
          progress: bool = True, skip_bad: bool = False) -> int:
    """Train until `config.steps`; returns the step reached. Resumes from the newest complete checkpoint in `run`.
    The dataset is checked first: bad items are refused, listed by name, or with `skip_bad` left out."""
    ctx = distributed.init(device)
    dev, world = ctx.device, ctx.world
    if config.batch % world:
        raise ValueError(f"global batch {config.batch} is not divisible by {world} processes")
    check_training(config, dev, world=world)
    run = Path(run)
    manifest = read_manifest(data)
    body, body_file = load_body(manifest, body_path)
    body = body.to(dev)
    gc = config.generator
    dataset = usable_dataset(data, gc, skip_bad=skip_bad, log=_say if ctx.main else lambda text: None)
    resolve_run(run, config, data, ctx.main)

    torch.manual_seed(config.seed)
    G = Generator(gc).to(dev).train()
    D = UNetDiscriminator(height=gc.height, width=gc.width, channels=config.d_channels, head=config.d_head,
                          num_classes=NUM_CLASSES if config.loss == "segmentation" else 1).to(dev).train()
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    G = distributed.sync_batch_norm(G, ctx)
    g_opt, d_opt = _optimizers(config, G, D)
    amp = config.amp and dev.type == "cuda"
    g_scaler = torch.amp.GradScaler(dev.type, enabled=amp)
    d_scaler = torch.amp.GradScaler(dev.type, enabled=amp)

    distributed.barrier(world)  # the run folder exists for every process
    resumed = state.resume(run, log=_say if ctx.main else lambda text: None, main=ctx.main)
    distributed.barrier(world)  # damaged checkpoints are moved aside before anyone prunes
    if resumed is not None:
        start = resumed.step
        state.restore(resumed.tensors, resumed.meta, generator=G, discriminator=D, g_optimizer=g_opt,
                      d_optimizer=d_opt, g_scaler=g_scaler, d_scaler=d_scaler)
        ema.load_state_dict(resumed.ema)
        if ctx.main:
            _say(f"resumed from step {start} ({resumed.path})")
        del resumed
    else:
        start = 0
        distributed.broadcast(G, world)
        distributed.broadcast(D, world)
        ema.load_state_dict(G.state_dict())
    if ctx.main:
        _trim_stats(run / "stats.jsonl", start)
    sampler = BatchSampler(len(dataset), batch=config.batch, rank=ctx.rank, world=world, seed=config.seed,
                           start_step=start)
    loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.workers,
                                              pin_memory=dev.type == "cuda", persistent_workers=config.workers > 0))
    samples = SampleSet.build(dataset, body, gc, device=dev) if ctx.main else None
    if ctx.main and start == 0:
        write_grid(run / "samples" / "reals.png", samples.reals())

    meter = _Meter(start, config.steps, config.batch, progress and ctx.main)
    watch = LossWatch()
    autocast = torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp)
    objective = Objective(config, G=G, D=D, body=body, autocast=autocast)
    for step in range(start, config.steps):
        rotate = config.rotate_cycle[step % len(config.rotate_cycle)]
        _set_lr(config, step, g_opt, d_opt)
        batch = {k: v.to(dev, non_blocking=True) for k, v in next(loader).items()}
        draw = objective.draw(batch, step, _rng(config, step, ctx.rank))
        styles = objective.styles(draw)
        D.requires_grad_(True).train()
        d_terms, fake = objective.discriminator_terms(draw, batch["image"], styles)
        _update(D, d_opt, d_scaler, d_terms["loss_D"], config, world)
        D.requires_grad_(False).eval()  # G's step: D's spectral-norm power iteration stays out of G's graph
        g_terms = objective.generator_terms(draw, styles, fake)
        _update(G, g_opt, g_scaler, g_terms["loss_G"], config, world)
        update_ema(ema, G, step, config.ema_decay)

        done = step + 1
        terms = {**d_terms, **g_terms}
        watch.update(done, terms)
        meter.tick(done, {"D": terms["loss_D"], "G": terms["loss_G"]})  # tensors: read (a host sync) when printed
        if any(done % every == 0 for every in (config.log_every, config.sample_every, config.checkpoint_every)) \
                or done == config.steps:
            watch.check(lambda: _newest(run))  # nothing is written after a non-finite loss
        if done % config.log_every == 0 or done == config.steps:
            values = distributed.mean_over_processes({k: v.item() for k, v in terms.items()}, world, dev)
            if ctx.main:
                memory = {"max_memory_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)} \
                    if dev.type == "cuda" else {}
                _append_stats(run / "stats.jsonl",
                              {"step": done, **values, "rotate": rotate, **meter.stats(), **memory})
        if ctx.main and (done % config.sample_every == 0 or done == config.steps):
            write_grid(run / "samples" / f"fakes-{done:07d}.png", samples.render(ema))
        if done % config.checkpoint_every == 0 or done == config.steps:
            distributed.check_in_sync(G, world, "generator")
            distributed.check_in_sync(D, world, "discriminator")
            check_weights(done, {"generator": G, "discriminator": D, "EMA generator": ema}, lambda: _newest(run))
            if ctx.main:
                extra = {"body_file": str(body_file), "data": str(data), "config": config.to_dict()}
                state.save(state.state_path(run, done), step=done, generator=G, discriminator=D, g_optimizer=g_opt,
                           d_optimizer=d_opt, g_scaler=g_scaler, d_scaler=d_scaler)
                save_generator(state.generator_path(run, done), ema, body_fingerprint=body.fingerprint, step=done,
                               extra=extra, truncation="defer")  # load() computes the means, not every checkpoint
                state.prune(run, keep_every=config.keep_every)
            distributed.barrier(world)
    meter.close()
    distributed.shutdown()
    return config.steps


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _newest(run: Path) -> str:
    step = state.latest(run)
    return f"The newest checkpoint, step {step} ({state.state_path(run, step)}), is untouched" if step else \
        "No checkpoint was written yet"


def _append_stats(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _trim_stats(path: Path, step: int) -> None:
    """Keep the complete records up to `step` (a killed run may have logged past its last checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", math.inf) <= step:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


class _Meter:
    """Throughput, ETA and a one-line progress bar on stderr (rank 0)."""

    def __init__(self, start: int, total: int, batch: int, show: bool) -> None:
        self.start, self.total, self.batch, self.show = start, total, batch, show
        self.t0 = self.last = time.perf_counter()
        self.rate = 0.0
        self.tty = sys.stderr.isatty()

    def tick(self, step: int, losses: dict[str, Tensor]) -> None:
        now = time.perf_counter()
        self.rate = (step - self.start) * self.batch / max(now - self.t0, 1e-9)
        if not self.show or (not self.tty and now - self.last < 30 and step < self.total):
            return
        self.last = now
        eta = (self.total - step) * self.batch / max(self.rate, 1e-9)
        bar = "#" * int(20 * step / self.total)
        text = (f"step {step}/{self.total} [{bar:<20}] " + " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                + f" | {self.rate:.2f} img/s | ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
        print(("\r" if self.tty else "") + text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def stats(self) -> dict[str, float]:
        return {"images_per_s": round(self.rate, 3), "seconds": round(time.perf_counter() - self.t0, 1)}

    def close(self) -> None:
        if self.show and self.tty:
            print(file=sys.stderr)
