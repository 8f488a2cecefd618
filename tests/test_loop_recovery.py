"""training/loop.py and training/state.py on damage: a damaged newest checkpoint is moved aside and the run resumes
from the newest good one, bitwise as if nothing had happened; NaN or inf stops the run, naming step and culprit,
before anything of that step is written or pruned."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny_body import write_box_body
from training import loop, objective, state
from training.checks import NonFiniteError
from training.config import preset
from training.loop import train
from training.synth import synth

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = preset("tiny").replace(checkpoint_every=3, keep_every=3, sample_every=100, log_every=1)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    body = write_box_body(root / "box_body.npz")
    synth(out=root / "data", count=8, height=32, width=16, seed=0, body_path=Path(body), progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def straight(collection, tmp_path_factory):
    """An uninterrupted 9-step run: what every recovered run must equal."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train(CONFIG.replace(steps=9), data=collection, run=run, progress=False)
    return run


def _flip(path: Path, offset_from_end: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(4):
        data[-offset_from_end - i] ^= 0xFF
    path.write_bytes(bytes(data))


def _same(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["state", "generator"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_good_one(collection, straight, tmp_path, capsys, kind):
    run = tmp_path / "run"
    train(CONFIG.replace(steps=6), data=collection, run=run, progress=False)
    damaged = run / f"{kind}-0000006.safetensors"
    _flip(damaged)
    flipped = damaged.read_bytes()
    capsys.readouterr()
    train(CONFIG.replace(steps=9), data=collection, run=run, progress=False)
    err = capsys.readouterr().err
    assert f"checkpoint of step 6 is damaged and was moved to {run / 'damaged'}" in err
    assert str(damaged) in err and "content hash" in err
    assert f"resumed from step 3 ({run / 'state-0000003.safetensors'})" in err
    assert (run / "damaged" / damaged.name).read_bytes() == flipped  # kept, not deleted
    assert sorted(p.name for p in (run / "damaged").iterdir()) == ["generator-0000006.safetensors",
                                                                  "state-0000006.safetensors"]
    assert state.complete_steps(run) == [3, 6, 9]  # step 6 redone from step 3
    for k in ("state", "generator"):
        assert _same(run / f"{k}-0000009.safetensors", straight / f"{k}-0000009.safetensors"), k


@pytest.mark.parametrize("log_every,logged", [(1, 4), (4, 1)])  # found when it happens, or at the next write
def test_a_nan_loss_stops_the_run_naming_step_and_term_and_keeps_the_checkpoints(collection, tmp_path,
                                                                                  monkeypatch, log_every, logged):
    run = tmp_path / "run"
    original, calls = objective.silhouette_loss, []

    def poisoned(*args):
        calls.append(1)
        value = original(*args)
        return value * math.nan if len(calls) == 5 else value

    monkeypatch.setattr(objective, "silhouette_loss", poisoned)
    with pytest.raises(NonFiniteError, match=r"step 5: non-finite loss \(loss_G = nan, silhouette = nan\).*"
                                             r"newest checkpoint, step 3 .*state-0000003.safetensors.*untouched"):
        train(CONFIG.replace(steps=9, silhouette_lambda=1.0, log_every=log_every), data=collection, run=run,
              progress=False)
    assert state.complete_steps(run) == [3]
    stats = [line for line in (run / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == logged and "NaN" not in "".join(stats)
    tensors, _ = state.read(state.state_path(run, 3))
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_non_finite_weights_are_never_checkpointed(collection, tmp_path, monkeypatch):
    run = tmp_path / "run"
    original = loop.update_ema

    def poisoned(ema, G, step, decay):
        original(ema, G, step, decay)
        if step == 5:  # the sixth step: its checkpoint is due
            next(ema.parameters()).data.fill_(math.inf)

    monkeypatch.setattr(loop, "update_ema", poisoned)
    with pytest.raises(NonFiniteError, match=r"step 6: the EMA generator's tensor \S+ holds NaN or inf; its "
                                             r"checkpoint was not written.*step 3"):
        train(CONFIG.replace(steps=9), data=collection, run=run, progress=False)
    assert state.complete_steps(run) == [3] and not list(run.glob("*-0000006.safetensors"))


@pytest.mark.slow
def test_a_damaged_options_file_is_named(collection, tmp_path):
    run = tmp_path / "run"
    train(CONFIG.replace(steps=1), data=collection, run=run, progress=False)
    (run / "training_options.json").write_text('{"config": ')
    with pytest.raises(ValueError, match=rf"{run / 'training_options.json'} is damaged"):
        train(CONFIG.replace(steps=2), data=collection, run=run, progress=False)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"--run {file} is a file"):
        train(CONFIG.replace(steps=1), data=collection, run=file, progress=False)
