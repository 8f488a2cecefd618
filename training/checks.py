"""Checks that stop a run before it writes anything wrong: non-finite losses and weights.

A NaN or inf loss, once stepped, poisons every weight; a checkpoint written after it would become the newest and
pruning would then delete the good ones. So every step's loss terms are watched (on the device) and checked before
the run writes anything (a log line, a sample grid, a checkpoint), and every weight before a checkpoint is written;
either failure stops the run with the step and the culprit named.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class NonFiniteError(ValueError):
    """Training produced NaN or inf; the message names the step and the loss term or tensor."""


class LossWatch:
    """The first step at which each loss term was NaN or inf, kept on the device, so that watching costs no host
    sync per step; `check` reads it (one sync) whenever the run is about to write something."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.first = self.value = torch.zeros(0)

    def update(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        """terms: name → scalar loss tensor of training step `step` (1-based); the same names at every step."""
        values = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
        if not self.names:
            self.names = tuple(terms)
            self.first = torch.full_like(values, -1, dtype=torch.int64)  # -1: finite so far
            self.value = torch.zeros_like(values)
        new = ~torch.isfinite(values) & (self.first < 0)
        self.first = torch.where(new, step, self.first)
        self.value = torch.where(new, values, self.value)

    def check(self, newest: Callable[[], str]) -> None:
        """Raise NonFiniteError naming the first bad step and its terms. newest() says where the last good
        checkpoint is, for the message (called only on failure)."""
        first = self.first.tolist()
        if max(first, default=-1) < 0:
            return
        step = min(f for f in first if f >= 0)
        bad = [f"{n} = {v}" for n, f, v in zip(self.names, first, self.value.tolist()) if f == step]
        raise NonFiniteError(f"step {step}: non-finite loss ({', '.join(bad)}); the run stopped before writing "
                             f"anything after it. {newest()}. Resume with a lower learning rate (or without AMP)")


def check_weights(step: int, modules: dict[str, nn.Module], newest: Callable[[], str]) -> None:
    """Every floating-point parameter and buffer of `modules` (name → module) is finite."""
    for what, module in modules.items():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteError(f"step {step}: the {what}'s tensor {name} holds NaN or inf; its checkpoint "
                                     f"was not written. {newest()}. Resume with a lower learning rate")
