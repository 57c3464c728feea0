"""The frozen reference a preference objective (KTO, DPO) measures against.

The reference is the parent version, and it shares the trained model's
weights wherever it can, so it costs almost no memory:

- LoRA on a parent without adapters: the reference is the same UNet with its
  adapters switched off (the base without adapters).
- LoRA on a parent that is itself a LoRA fine-tune: training continues the
  parent's adapters; the reference swaps the parent's adapter tensors (a few
  megabytes) back in for its forward pass.
- Full UNet: a frozen copy of the parent's UNet, in half precision on a GPU
  when training runs in mixed precision.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


class ReferenceModel:
    """Calls the parent's UNet on the policy's inputs, without gradients."""

    kind: str = ""

    @contextmanager
    def active(self) -> Iterator[Any]:
        """Yield a UNet that computes the reference's predictions."""
        raise NotImplementedError
        yield  # pragma: no cover

    def predict(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, context: Any
    ) -> Any:
        with torch.no_grad(), self.active() as unet:
            dtype = next(unet.parameters()).dtype
            return unet(
                noisy.to(dtype), timesteps, encoder_hidden_states=context.to(dtype)
            ).sample.float()


class FrozenCopy(ReferenceModel):
    """A separate, frozen copy of the parent's whole UNet."""

    kind = "frozen_copy"

    def __init__(self, unet: Any, *, dtype: torch.dtype | None = None) -> None:
        self.unet = copy.deepcopy(unet)
        self.unet.requires_grad_(False).eval()
        if dtype is not None:
            self.unet.to(dtype=dtype)

    @contextmanager
    def active(self) -> Iterator[Any]:
        yield self.unet


class AdaptersOff(ReferenceModel):
    """The trained UNet with its LoRA adapters disabled: the base model."""

    kind = "adapters_off"

    def __init__(self, unwrap: Callable[[], Any]) -> None:
        self.unwrap = unwrap

    @contextmanager
    def active(self) -> Iterator[Any]:
        unet = self.unwrap()
        unet.disable_adapters()
        try:
            yield unet
        finally:
            unet.enable_adapters()


class AdapterSnapshot(ReferenceModel):
    """The trained UNet with the parent's adapter tensors swapped back in."""

    kind = "adapter_snapshot"

    def __init__(self, unwrap: Callable[[], Any]) -> None:
        self.unwrap = unwrap
        self.saved = {
            name: p.detach().clone()
            for name, p in unwrap().named_parameters()
            if "lora_" in name
        }
        if not self.saved:
            raise ValueError("the UNet has no LoRA adapters to snapshot")

    @contextmanager
    def active(self) -> Iterator[Any]:
        unet = self.unwrap()
        params = dict(unet.named_parameters())
        current = {}
        with torch.no_grad():
            for name, value in self.saved.items():
                current[name] = params[name].detach().clone()
                params[name].copy_(value)
        try:
            yield unet
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)


def build_reference(
    unet: Any,
    *,
    unwrap: Callable[[], Any],
    use_lora: bool,
    parent_has_lora: bool,
    dtype: torch.dtype | None = None,
) -> ReferenceModel:
    """The reference for a fine-tune of ``unet`` (see the module docstring).

    Call it before the first optimiser step, while the weights are still the
    parent's.
    """
    if use_lora:
        return AdapterSnapshot(unwrap) if parent_has_lora else AdaptersOff(unwrap)
    return FrozenCopy(unet, dtype=dtype)
