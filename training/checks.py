"""Checks that stop a run before it writes anything wrong: non-finite losses and weights.

A NaN or inf loss, once stepped, poisons every weight; a checkpoint written after it would become the newest and
pruning would then delete the good ones. So every step's loss terms are checked as soon as they are known, and every
weight before a checkpoint is written; either failure stops the run with the step and the culprit named.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


class NonFiniteError(ValueError):
    """Training produced NaN or inf; the message names the step and the loss term or tensor."""


def check_losses(step: int, losses: dict[str, float], newest: Callable[[], str]) -> None:
    """losses: term name → value of training step `step` (1-based: the step just computed). newest() says where the
    last good checkpoint is, for the message (called only on failure)."""
    bad = [f"{name} = {value}" for name, value in losses.items() if not math.isfinite(value)]
    if bad:
        raise NonFiniteError(f"step {step}: non-finite loss ({', '.join(bad)}); the run stopped before writing "
                             f"anything of this step. {newest()}. Resume with a lower learning rate (or without AMP)")


def check_weights(step: int, modules: dict[str, nn.Module], newest: Callable[[], str]) -> None:
    """Every floating-point parameter and buffer of `modules` (name → module) is finite."""
    for what, module in modules.items():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteError(f"step {step}: the {what}'s tensor {name} holds NaN or inf; its checkpoint "
                                     f"was not written. {newest()}. Resume with a lower learning rate")
