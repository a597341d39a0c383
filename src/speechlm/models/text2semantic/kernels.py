"""Matrix kernels for int8 weight-only linear layers, chosen by measurement on the running machine.

Every candidate computes ``x @ (q * scales[:, None]).T`` for int8 weights ``q`` (out, in) and per-row
``scales`` (out,); they differ in what they read and in which precision the activations travel:

| name | weight held | activations | where |
|---|---|---|---|
| ``fp32`` | dequantized float32 (4 B/weight) | float32 | any device |
| ``bf16`` | ``q`` as bfloat16 (exact), scales after the matmul | bfloat16 | any device (the original's runtime) |
| ``int8pack`` | ``q`` (1 B/weight), ``torch._weight_int8pack_mm`` | bfloat16 | CPU, CUDA (torch >= 2.4) |
| ``fbgemm`` | ``q`` prepacked for fbgemm (1 B/weight), dynamic int8 | uint8 (per call, per tensor) | x86 CPU |

Which is fastest depends on the CPU (bf16 matrix-vector is 2× faster than fp32 on one machine and
slower on another, see experiments/generation_speed), so :func:`choose_kernel` times the candidates
per weight shape on matrices that do not fit in the caches (decoding streams every weight from
memory once per token), checks each one's error on a probe, and keeps the winner for the process and on
disk (:mod:`speechlm.probes`: interleaved rounds, minimum kept; reused at the next load per CPU, torch
version, shape, dtype and thread count; ``probe_cache=refresh`` measures again).
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from speechlm import probes

log = logging.getLogger(__name__)

STREAM_BYTES = 96 << 20  # each candidate's working set: larger than the L3 of a server CPU slice
MAX_COPIES = 64  # bounds the load-time cost; 64 copies of a 1024x1024 int8 matrix already leave L3
SMALL_BYTES, SMALL_COPIES = 1 << 20, 8
MAX_REL_ERROR = 0.05  # a candidate whose probe output is further than this from fp32 is rejected


class Kernel(NamedTuple):
    """``prepare(q, scales) -> state`` once per layer; ``run(x, state) -> y`` per call."""

    prepare: Callable[[Tensor, Tensor], object]
    run: Callable[[Tensor, object], Tensor]


def _fp32_prepare(q: Tensor, s: Tensor):
    return (q.float() * s.float()[:, None]).contiguous()


def _fp32_run(x: Tensor, w: Tensor) -> Tensor:
    return F.linear(x.to(w.dtype), w).to(x.dtype)


def _bf16_prepare(q: Tensor, s: Tensor):
    return q.to(torch.bfloat16), s.to(torch.bfloat16)


def _bf16_run(x: Tensor, state) -> Tensor:
    w, s = state
    return (F.linear(x.to(w.dtype), w) * s).to(x.dtype)


def _int8pack_prepare(q: Tensor, s: Tensor):
    return q.contiguous(), s.to(torch.bfloat16)


def _int8pack_run(x: Tensor, state) -> Tensor:
    q, s = state
    shape = x.shape
    y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), q, s)
    return y.reshape(*shape[:-1], q.size(0)).to(x.dtype)


def _fbgemm_prepare(q: Tensor, s: Tensor):
    with warnings.catch_warnings():  # quantized-tensor constructors warn that they are deprecated
        warnings.simplefilter("ignore")
        qw = torch._make_per_channel_quantized_tensor(q.cpu(), s.double().cpu(),
                                                      torch.zeros(q.size(0), dtype=torch.long), 0)
        return torch.ops.quantized.linear_prepack(qw, None)


@functools.lru_cache(maxsize=1)
def _fbgemm_reduce_range() -> bool:
    """7-bit activations for fbgemm on x86 CPUs without VNNI.

    Without VNNI, fbgemm multiplies u8 x s8 pairs with ``vpmaddubsw``, whose int16 sum of two products
    saturates for large activations (measured here: 0.5 logit error on the tiny fixture, AVX2-only Zen 3),
    which is why PyTorch's own x86 dynamic-quantization configs use ``reduce_range``.
    """
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return True  # unknown CPU: the safe choice
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def _fbgemm_run(x: Tensor, packed) -> Tensor:
    return torch.ops.quantized.linear_dynamic(x.float(), packed, _fbgemm_reduce_range()).to(x.dtype)


KERNELS: dict[str, Kernel] = {
    "fp32": Kernel(_fp32_prepare, _fp32_run),
    "bf16": Kernel(_bf16_prepare, _bf16_run),
    "int8pack": Kernel(_int8pack_prepare, _int8pack_run),
    "fbgemm": Kernel(_fbgemm_prepare, _fbgemm_run),
}


def candidates(device: torch.device) -> list[str]:
    """Kernels that can run on ``device`` (each is still probed before it is timed)."""
    if device.type == "cpu":
        names = ["fp32", "bf16", "int8pack"]
        if "fbgemm" in torch.backends.quantized.supported_engines or "x86" in torch.backends.quantized.supported_engines:
            names.append("fbgemm")
        return names
    if device.type == "cuda":
        return ["bf16", "int8pack", "fp32"]
    return ["fp32"]


def _probe(name: str, q: Tensor, s: Tensor, device: torch.device) -> float:
    """Relative error of kernel ``name`` against the float64 result on a random (4, in) input (inf: fails)."""
    try:
        k = KERNELS[name]
        x = torch.randn(4, q.size(1), generator=torch.Generator().manual_seed(0)).to(device)
        y = k.run(x, k.prepare(q, s)).double()
        ref = x.double() @ (q.double() * s.double()[:, None]).T
        return float((y - ref).norm() / ref.norm().clamp_min(1e-30))
    except (RuntimeError, NotImplementedError, TypeError, AttributeError) as e:
        log.debug("kernel %s unavailable on %s: %s", name, device, str(e).splitlines()[0] if str(e) else e)
        return math.inf


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8pack": 1, "fbgemm": 1, "row": 4, "column": 4}
_POOL: dict[str, Tensor] = {}


def _pool(device: torch.device) -> Tensor:
    """One ``STREAM_BYTES`` random int8 buffer per device; benchmark matrices are slices of it."""
    if device.type not in _POOL:
        g = torch.Generator().manual_seed(1)
        _POOL[device.type] = torch.randint(-128, 128, (STREAM_BYTES,), dtype=torch.int8, generator=g).to(device)
    return _POOL[device.type]


def _states(name: str, out_f: int, in_f: int, device: torch.device, table: dict | None = None) -> list:
    """Prepared copies of kernel ``name`` for an (out_f, in_f) weight, ``STREAM_BYTES`` of them in all."""
    n = out_f * in_f
    pool = _pool(device)
    nbytes = n * BYTES_PER_WEIGHT.get(name, 4)
    # a matrix under SMALL_BYTES stays in cache in the model too: a few copies time its call overhead
    cap = SMALL_COPIES if nbytes < SMALL_BYTES else MAX_COPIES
    copies = max(1, min(math.ceil(STREAM_BYTES / nbytes), pool.numel() // n, cap))
    s = torch.full((out_f,), 1e-3, device=device)
    table = table or KERNELS
    return [table[name].prepare(pool[i * n:(i + 1) * n].view(out_f, in_f), s) for i in range(copies)]


def _pass_time(name: str, states: list, x: Tensor, table: dict | None = None,
               clock: Callable[[], float] | None = None) -> float:
    """Seconds of the fastest call in one pass through ``states`` (weights streamed from memory, not cache).

    The fastest call, not the mean: on a shared machine another process preempts single calls, and a pass's
    mean carries every preemption in it, while its fastest call is the one that ran undisturbed.
    """
    run = (table or KERNELS)[name].run
    clock = clock or time.perf_counter
    best = math.inf
    for st in states:
        _sync(x.device)
        t0 = clock()
        run(x, st)
        _sync(x.device)
        best = min(best, clock() - t0)
    return best


def _disk_key(shape, dtype: str, device: torch.device, names) -> str:
    """What a cached decision depends on within one machine's file (CPU and torch are the file's key)."""
    return (f"{'x'.join(map(str, shape))}|{dtype}|{probes.device_name(device)}|threads={torch.get_num_threads()}"
            f"|{','.join(names)}")


def _timed(names, states: dict, x: Tensor, rounds: int, table: dict | None, clock) -> dict[str, float]:
    """Warm each candidate up once, then :func:`speechlm.probes.interleaved_min` over passes."""
    kw = {} if table is None else {"table": table}
    if clock is not None:
        kw["clock"] = clock
    for n in names:
        _pass_time(n, states[n], x, **kw)  # warm-up: first calls pay allocations and lazy initialisation
    return probes.interleaved_min({n: functools.partial(_pass_time, n, states[n], x, **kw) for n in names}, rounds)


_CACHE: dict[tuple, str] = {}


def choose_kernel(q: Tensor, s: Tensor, names: list[str] | None = None, rounds: int = 3, *,
                  clock: Callable[[], float] | None = None) -> str:
    """The fastest correct kernel for int8 weights of ``q``'s shape on ``q``'s device.

    Candidates are timed at batch 1 (what a decoding step runs) in interleaved rounds, the minimum of each
    kept (:func:`speechlm.probes.interleaved_min`). The decision is kept per process and on disk, and a
    cached one is reused (after checking it still computes the right product) instead of measuring again.

    Args:
        clock: seconds, monotonic (default ``time.perf_counter``; tests inject a slow one).
    """
    device = q.device
    names = list(names or candidates(device))
    key = (tuple(q.shape), device.type, torch.get_num_threads(), tuple(names))
    if key in _CACHE:
        return _CACHE[key]
    disk_key = _disk_key(q.shape, f"{q.dtype}*{s.dtype}", device, names)
    cached = probes.recall("int8", disk_key)
    if cached and cached.get("choice") in names and _probe(cached["choice"], q, s, device) <= MAX_REL_ERROR:
        _CACHE[key], _TIMES[key] = cached["choice"], dict(cached.get("times") or {})
        log.debug("int8 kernel for %s on %s: %s (cached)", tuple(q.shape), device, cached["choice"])
        return cached["choice"]
    ok = [n for n in names if _probe(n, q, s, device) <= MAX_REL_ERROR]
    if not ok:
        raise RuntimeError(f"no int8 kernel works on {device} (tried {', '.join(names)})")
    states = {n: _states(n, q.size(0), q.size(1), device) for n in ok}
    times = _timed(ok, states, torch.randn(1, q.size(1), device=device), rounds, None, clock)
    del states
    best = min(times, key=times.get)
    log.debug("int8 kernel for %s on %s: %s (%s)", tuple(q.shape), device, best,
              ", ".join(f"{n} {1e3 * t:.3f} ms" for n, t in times.items()))
    _CACHE[key] = best
    _TIMES[key] = times
    probes.remember("int8", disk_key, {"choice": best, "times": times})
    return best


_TIMES: dict[tuple, dict[str, float]] = {}


def measured_times() -> dict[tuple, dict[str, float]]:
    """Seconds per call of every candidate that :func:`choose_kernel` timed in this process."""
    return {k: dict(v) for k, v in _TIMES.items()}


def chosen_kernels() -> dict[tuple, str]:
    """What :func:`choose_kernel` picked so far in this process: (shape, device, threads, names) → kernel."""
    return dict(_CACHE)


# Float (unquantized) linears: the same values stored row-major (``F.linear(x, W)``) or transposed
# (``x @ Wt`` with ``Wt`` contiguous): which streams faster at batch 1 depends on the CPU's BLAS.
LAYOUTS: dict[str, Kernel] = {
    "row": Kernel(lambda q, s: q.float().contiguous(), lambda x, w: F.linear(x, w)),
    "column": Kernel(lambda q, s: q.float().t().contiguous(), lambda x, wt: x @ wt),
}


def choose_float_layout(weight: Tensor, rounds: int = 3, *, clock: Callable[[], float] | None = None) -> str:
    """``"row"`` or ``"column"``: the faster memory layout for a float32 linear weight of this shape.

    Measured and kept like :func:`choose_kernel` (per process and on disk).
    """
    device = weight.device
    key = ("layout", tuple(weight.shape), device.type, torch.get_num_threads())
    if key in _CACHE:
        return _CACHE[key]
    disk_key = _disk_key(weight.shape, str(weight.dtype), device, LAYOUTS)
    cached = probes.recall("layout", disk_key)
    if cached and cached.get("choice") in LAYOUTS:
        _CACHE[key], _TIMES[key] = cached["choice"], dict(cached.get("times") or {})
        return cached["choice"]
    states = {n: _states(n, weight.size(0), weight.size(1), device, LAYOUTS) for n in LAYOUTS}
    times = _timed(list(LAYOUTS), states, torch.randn(1, weight.size(1), device=device), rounds, LAYOUTS, clock)
    best = min(times, key=times.get)
    _CACHE[key], _TIMES[key] = best, times
    probes.remember("layout", disk_key, {"choice": best, "times": times})
    return best
