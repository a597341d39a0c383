"""Kernel choice by measurement, int4 groupwise layers, and the CUDA compile options (testable on CPU)."""

from __future__ import annotations

import pytest
import torch

from speechlm.errors import InputError
from speechlm.models.text2semantic import int4 as int4_mod
from speechlm.models.text2semantic import kernels
from speechlm.models.text2semantic.int4 import Int4Linear, dequantize_int4, group_quantize_int4
from speechlm.models.text2semantic.quantize import quantize_int4, quantize_per_channel_int8
from speechlm.stages.token_loop import compile_options


def _weights(out_f=96, in_f=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out_f, in_f, generator=g) * 0.02


def test_per_channel_int8_semantics():
    w = _weights()
    w[3] = 0  # an all-zero row: scale clamps to float32 eps, q = 0
    q, s = quantize_per_channel_int8(w)
    assert q.dtype == torch.int8 and s.shape == (w.size(0),)
    assert torch.equal(q[3], torch.zeros_like(q[3])) and s[3] == torch.finfo(torch.float32).eps
    amax = w.abs().amax(dim=1)
    torch.testing.assert_close(s[:3], amax[:3] / 127.5)
    assert (q.float() * s[:, None] - w).abs().max() <= s.max() / 2 + 1e-9


@pytest.mark.parametrize("name", kernels.candidates(torch.device("cpu")))
def test_each_candidate_computes_the_int8_product(name):
    q, s = quantize_per_channel_int8(_weights())
    x = torch.randn(3, 256)
    ref = x.double() @ (q.double() * s.double()[:, None]).T
    k = kernels.KERNELS[name]
    y = k.run(x, k.prepare(q, s))
    assert y.shape == (3, 96) and y.dtype == x.dtype
    assert float((y.double() - ref).norm() / ref.norm()) < kernels.MAX_REL_ERROR


def test_choice_is_measured_once_per_shape_and_skips_broken_kernels(monkeypatch):
    calls = []
    real = kernels._pass_time

    def counting(name, states, x):
        calls.append(name)
        return real(name, states, x)

    def broken_run(x, state):
        raise RuntimeError("no kernel for this device")

    monkeypatch.setattr(kernels, "_pass_time", counting)
    monkeypatch.setitem(kernels.KERNELS, "broken", kernels.Kernel(kernels._fp32_prepare, broken_run))
    monkeypatch.setitem(kernels.KERNELS, "wrong", kernels.Kernel(kernels._fp32_prepare, lambda x, w: x @ w.T * 2))
    q, s = quantize_per_channel_int8(_weights(40, 128))
    names = ["fp32", "broken", "wrong", "int8pack"]
    best = kernels.choose_kernel(q, s, names)
    assert best in ("fp32", "int8pack")
    assert set(calls) == {"fp32", "int8pack"}  # the failing and the inaccurate one were never timed
    n = len(calls)
    assert kernels.choose_kernel(q, s, names) == best and len(calls) == n  # cached
    assert set(kernels.measured_times()[(tuple(q.shape), "cpu", torch.get_num_threads(), tuple(names))]) == \
        {"fp32", "int8pack"}


@pytest.mark.parametrize("groupsize", [32, 64, 128, 256])
def test_int4_groupwise_roundtrip_and_cpu_kernel(groupsize):
    lin = torch.nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        lin.weight.copy_(_weights(64, 256))
    q, scales, zeros = group_quantize_int4(lin.weight.to(torch.bfloat16), groupsize)
    assert q.min() >= 0 and q.max() <= 15 and scales.dtype == torch.bfloat16
    deq = dequantize_int4(q, scales, zeros, groupsize)
    step = (scales.float().repeat_interleave(groupsize, dim=1))
    assert ((deq - lin.weight.bfloat16().float()).abs() <= step * 0.51 + 1e-3).all()
    layer = Int4Linear(lin, groupsize)
    x = torch.randn(2, 256)
    torch.testing.assert_close(layer(x), x.bfloat16().float() @ deq.T, atol=2e-2, rtol=2e-2)


def test_int4_on_cpu_is_decided_by_measurement(monkeypatch):
    def model():
        m = torch.nn.Sequential(torch.nn.Linear(256, 128, bias=False), torch.nn.Linear(128, 8, bias=False), torch.nn.Linear(128, 16, bias=False))
        return m.eval()

    monkeypatch.setattr(int4_mod, "int4_speed_ratio", lambda *a, **k: 3.0)
    with pytest.raises(InputError, match="slower than int8 on this CPU"):
        quantize_int4(model(), 128)
    monkeypatch.setattr(int4_mod, "int4_speed_ratio", lambda *a, **k: 0.5)
    m = model()
    assert quantize_int4(m, 128) == 2 and isinstance(m[0], Int4Linear)
    assert isinstance(m[1], torch.nn.Linear) and isinstance(m[2], Int4Linear)  # 8 rows: no int4 kernel
    with pytest.raises(InputError, match="groupsize=48"):
        quantize_int4(model(), 48)


def test_compile_options_use_cuda_graphs_on_cuda_only():
    assert compile_options(torch.device("cuda")) == dict(mode="reduce-overhead", fullgraph=True, dynamic=False)
    assert compile_options(torch.device("cpu")) == dict(dynamic=False)
