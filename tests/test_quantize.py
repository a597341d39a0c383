"""task=quantize and int8/int4 loading on the tiny random checkpoint: naming, envelopes, strict errors."""

from __future__ import annotations

import pytest
import torch

from speechlm.config import compose
from speechlm.errors import CheckpointError, InputError
from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.models.text2semantic.quantize import Int8Linear, int8_state_dict
from speechlm.stages.generate import SemanticGenerator
from speechlm.tasks.quantize import run as quantize_run
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("q")
    return make_tiny_text2semantic(folder, seed=0)


@pytest.fixture(scope="module")
def int8_file(tiny):
    cfg = compose("infer", ["task=quantize", f"checkpoints.text2semantic={tiny}", "model/text2semantic=tiny"])
    return quantize_run(cfg)


def _cfg():
    return compose("infer", ["model/text2semantic=tiny"]).model.text2semantic


def test_task_writes_int8_file_beside_the_input(tiny, int8_file):
    assert int8_file == tiny.with_name(f"{tiny.stem}.int8{tiny.suffix}")
    sd = torch.load(int8_file, weights_only=True)
    assert not any(k.startswith("model.") for k in sd)
    assert sd["layers.0.attention.wqkv.weight"].dtype == torch.int8
    assert sd["layers.0.attention.wqkv.scales"].dtype == torch.bfloat16
    assert sd["norm.weight"].dtype == torch.bfloat16


def test_task_output_key_and_refusals(tiny, int8_file, tmp_path):
    out = tmp_path / "custom.pth"
    cfg = compose("infer", ["task=quantize", f"checkpoints.text2semantic={tiny}", "model/text2semantic=tiny",
                            f"output={out}"])
    assert quantize_run(cfg) == out and out.is_file()
    with pytest.raises(InputError, match="quantize=int4"):
        quantize_run(compose("infer", ["task=quantize", f"checkpoints.text2semantic={tiny}", "mode=int4"]))
    with pytest.raises(CheckpointError, match="already an int8 file"):
        quantize_run(compose("infer", ["task=quantize", f"checkpoints.text2semantic={int8_file}",
                                       "model/text2semantic=tiny"]))


@pytest.mark.parametrize("envelope", ["flat", "prefixed", "lightning"])
def test_int8_recognised_by_content_in_every_envelope(int8_file, tmp_path, envelope):
    sd = torch.load(int8_file, weights_only=True)
    if envelope == "prefixed":
        sd = {f"model.{k}": v for k, v in sd.items()}
    elif envelope == "lightning":
        sd = {"state_dict": {f"model.{k}": v for k, v in sd.items()}}
    path = tmp_path / "weights.pth"  # no "int8" in the name
    torch.save(sd, path)
    model = load_text2semantic(_cfg(), path)
    assert isinstance(model.layers[0].attention.wqkv, Int8Linear)
    ref = load_text2semantic(_cfg(), int8_file).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_int8_strict_errors(int8_file, tmp_path):
    sd = torch.load(int8_file, weights_only=True)
    del sd["layers.0.attention.wo.scales"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(layers.0.attention.wo.scales\)") as e:
        load_text2semantic(_cfg(), tmp_path / "broken.pth")
    assert "\n" not in str(e.value)
    small = compose("infer", ["model/text2semantic=dual_ar_2_codebook_small"]).model.text2semantic
    with pytest.raises(CheckpointError, match="does not match config"):
        load_text2semantic(small, int8_file)


def test_original_int4_file_refused(tiny, tmp_path):
    sd = {k[len("model."):]: v for k, v in torch.load(tiny, weights_only=True).items()}
    sd["layers.0.attention.wqkv.weight"] = torch.zeros(8, 1, 32, 4, dtype=torch.int32)
    sd["layers.0.attention.wqkv.scales_and_zeros"] = torch.zeros(1, 192, 2, dtype=torch.bfloat16)
    torch.save(sd, tmp_path / "m.int4.g32.pth")
    with pytest.raises(CheckpointError, match="quantize from the original checkpoint instead") as e:
        load_text2semantic(_cfg(), tmp_path / "m.int4.g32.pth")
    assert "\n" not in str(e.value)


def test_quantize_argument(tiny, int8_file):
    with pytest.raises(InputError, match="quantize='int3'"):
        load_text2semantic(_cfg(), tiny, quantize="int3")
    with pytest.raises(CheckpointError, match="already int8"):
        load_text2semantic(_cfg(), int8_file, quantize="int4")
    a = load_text2semantic(_cfg(), tiny, quantize="int8").state_dict()
    b = load_text2semantic(_cfg(), int8_file).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_generator_from_config_with_int8(tiny):
    gen = SemanticGenerator.from_config(_cfg(), tiny, quantize="int8")
    segs = list(gen.generate("Hello there.", max_new_tokens=6, progress=False))
    assert segs and segs[0].codes.dtype == torch.int64


def test_int8_state_dict_quantizes_every_linear(tiny):
    model = load_text2semantic(_cfg(), tiny)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    sd = int8_state_dict(model)
    assert sum(k.endswith(".scales") for k in sd) == n_linear
    assert all(v.dtype in (torch.int8, torch.bfloat16) for v in sd.values())
