"""Weight-only quantization of the text-to-semantic transformers (the original's ``tools/llama/quantize.py``).

int8 (``--mode int8`` of the original): every ``nn.Linear`` weight, after a cast to bfloat16, is
quantized symmetrically per output row, ``scale = max(|min|, |max|) / 127.5`` (at least float32 eps),
``q = clamp(round(w / scale), -128, 127)``. A file holds ``<linear>.weight`` (int8, same shape) and
``<linear>.scales`` (bfloat16, (out,)); every other tensor stays bfloat16, keys without ``model.``.

int4 (``--mode int4``): groupwise asymmetric 4-bit (``groupsize`` 32/64/128/256 input columns per
scale/zero pair), packed at load time for the device's kernel. The original's int4 files hold a
layout tied to the CUDA device and torch version that made them, so they are refused (re-quantize).
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch
from torch import Tensor, nn

from speechlm.models.text2semantic import kernels

log = logging.getLogger(__name__)

INT4_GROUPSIZES = (32, 64, 128, 256)


def quantize_per_channel_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8 of ``w`` (out, in) → (q int8 (out, in), scales float32 (out,))."""
    w = w.float()
    lo, hi = torch.aminmax(w, dim=1)
    amax = torch.maximum(-torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi)))
    scales = torch.clamp(amax / 127.5, min=torch.finfo(torch.float32).eps)
    q = torch.clamp(torch.round(w / scales.unsqueeze(-1)), -128, 127).to(torch.int8)
    return q.contiguous(), scales


def int8_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The original ``--mode int8`` state dict of ``model`` (floats rounded to bfloat16 first).

    Key order is the model's ``state_dict`` order with every ``<linear>.scales`` appended after it.
    """
    model = model.to(torch.bfloat16)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            q, s = quantize_per_channel_int8(mod.weight.detach().float())
            sd[f"{name}.weight"] = q
            sd[f"{name}.scales"] = s.to(mod.weight.dtype)
    return sd


def is_int8_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """True for an int8 file: some ``<p>.scales`` key next to an int8 ``<p>.weight``."""
    return any(k.endswith(".scales") and getattr(sd.get(k[: -len("scales")] + "weight"), "dtype", None) == torch.int8
               for k in sd)


def is_original_int4_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """True for a file written by the original's ``--mode int4`` (packed weights + ``scales_and_zeros``)."""
    return any(k.endswith(".scales_and_zeros") for k in sd)


class Int8Linear(nn.Module):
    """``y = x @ (weight * scales[:, None]).T`` with int8 ``weight`` (out, in) and ``scales`` (out,) buffers.

    The state-dict keys are the original's (``weight``, ``scales``). :meth:`prepare` picks the matrix
    kernel for the device by measurement (:mod:`.kernels`); until then the exact float32 path runs.
    """

    def __init__(self, in_features: int, out_features: int, scales_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=scales_dtype))
        self.kernel: str | None = None
        self._state = None

    def prepare(self, kernel: str | None = None) -> str:
        """Choose (or set) the kernel and build its weight form; returns its name."""
        self.kernel = kernel or kernels.choose_kernel(self.weight, self.scales)
        self._state = kernels.KERNELS[self.kernel].prepare(self.weight, self.scales)
        return self.kernel

    def forward(self, x: Tensor) -> Tensor:
        if self._state is None:
            self.prepare("fp32")
        return kernels.KERNELS[self.kernel].run(x, self._state)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


def replace_linears(model: nn.Module, factory) -> nn.Module:
    """Swap every ``nn.Linear`` of ``model`` (in place) for ``factory(linear)``."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, factory(child))
        else:
            replace_linears(child, factory)
    return model


def as_int8_model(model: nn.Module) -> nn.Module:
    """Swap every ``nn.Linear`` for an empty :class:`Int8Linear` of its size (before loading an int8 file)."""
    return replace_linears(model, lambda m: Int8Linear(m.in_features, m.out_features))


@torch.no_grad()
def to_int8_model(model: nn.Module, prepare: bool = True) -> nn.Module:
    """Quantize a loaded float model in place to what its int8 file would load as (see :func:`int8_state_dict`).

    Every float tensor is rounded through bfloat16 as the file stores it; linears become :class:`Int8Linear`.
    """
    dtype = next(model.parameters()).dtype

    def factory(m: nn.Linear) -> Int8Linear:
        q, scales = quantize_per_channel_int8(m.weight.detach().to(torch.bfloat16))
        layer = Int8Linear(m.in_features, m.out_features)
        layer.weight, layer.scales = q.to(m.weight.device), scales.to(torch.bfloat16).to(m.weight.device, dtype)
        return layer

    for ff in model.modules():  # a fused w1/w3 copy would keep serving the float weights
        if getattr(ff, "w13t", None) is not None:
            ff.w13t = None
    replace_linears(model, factory)
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16).to(dtype)
    if prepare:
        prepare_int8(model)
    return model


@torch.no_grad()
def prepare_int8(model: nn.Module) -> dict[str, int]:
    """Choose each :class:`Int8Linear`'s kernel by measurement and fuse each w1/w3 pair; returns kernel counts."""
    counts: dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, Int8Linear):
            k = m.prepare()
            counts[k] = counts.get(k, 0) + 1
        ff_w1, ff_w3 = getattr(m, "w1", None), getattr(m, "w3", None)
        if isinstance(ff_w1, Int8Linear) and isinstance(ff_w3, Int8Linear) and hasattr(m, "gate_up"):
            fused = Int8Linear(ff_w1.in_features, 2 * ff_w1.out_features).to(ff_w1.weight.device)
            fused.weight = torch.cat([ff_w1.weight, ff_w3.weight])
            fused.scales = torch.cat([ff_w1.scales, ff_w3.scales])
            fused.prepare()
            m.gate_up = fused.forward  # a bound method: not a registered submodule, keys unchanged
            ff_w1._state = ff_w3._state = None  # the fused copy serves the step; keep memory to one form
            ff_w1.kernel = ff_w3.kernel = None
    log.info("int8 kernels: %s", ", ".join(f"{k} ×{n}" for k, n in sorted(counts.items())))
    return counts


@torch.no_grad()
def quantize_int4(model: nn.Module, groupsize: int = 128, check_speed: bool = True) -> int:
    """Swap every ``nn.Linear`` whose size the int4 kernels take for an :class:`~.int4.Int4Linear`.

    On CPU the int4 kernel is first timed against the int8 one on the model's largest linear layer;
    if it is not faster there, nothing is changed and an InputError says so (measured, not assumed).
    ``check_speed=False`` skips that (quality measurements). Returns the number of layers swapped.
    """
    from speechlm.errors import InputError
    from speechlm.models.text2semantic.int4 import Int4Linear, int4_speed_ratio, int4_supported

    if groupsize not in INT4_GROUPSIZES:
        raise InputError(f"groupsize={groupsize} is not one of {', '.join(map(str, INT4_GROUPSIZES))}",
                         "use groupsize=128", field="groupsize")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and int4_supported(m.in_features, m.out_features, groupsize)]
    if not linears:
        raise InputError(f"no linear layer of this model fits int4 groupsize {groupsize}", "use quantize=int8",
                         field="quantize")
    if check_speed and linears[0].weight.device.type == "cpu":
        big = max(linears, key=lambda m: m.weight.numel())
        q, s = quantize_per_channel_int8(big.weight.to(torch.bfloat16))
        ref = Int8Linear(big.in_features, big.out_features)
        ref.weight, ref.scales = q, s.to(torch.bfloat16)
        ref.prepare()
        ratio = int4_speed_ratio(big, groupsize, ref)
        if ratio >= 1.0:
            raise InputError(f"int4 is {ratio:.1f}x slower than int8 on this CPU (measured on a "
                             f"{big.out_features}x{big.in_features} layer)", "use quantize=int8 on CPU",
                             field="quantize")
    swapped = 0

    def factory(m: nn.Linear) -> nn.Module:
        nonlocal swapped
        if not int4_supported(m.in_features, m.out_features, groupsize):
            return m
        swapped += 1
        return Int4Linear(m, groupsize)

    for ff in model.modules():  # a fused w1/w3 copy would keep serving the float weights
        if hasattr(ff, "w13t"):
            ff.w13t = None
    replace_linears(model, factory)
    log.info("int4 (groupsize %d): %d linear layers", groupsize, swapped)
    return swapped
