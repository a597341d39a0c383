"""Import the original Fish Speech v1.1.2 text-to-semantic model and decode loop from a user's checkout.

``--reference DIR`` of the benchmarks: DIR is a local checkout of fish-speech v1.1.2 the user fetched
(this project never downloads or ships it). Only ``fish_speech/models/text2semantic/llama.py``,
``fish_speech/text`` and ``tools/llama/{generate,quantize}.py`` are loaded; third-party packages the
decode path does not use (``einops`` for the training forward, ``loguru``, ``transformers``) are
replaced by inert stand-ins when they are not installed, and ``fish_speech.datasets.text`` by its two
constants read from the file (its real imports pull in pyarrow/datasets).
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import types
from pathlib import Path

import torch

NEEDED = ("fish_speech/models/text2semantic/llama.py", "tools/llama/generate.py", "tools/llama/quantize.py",
          "fish_speech/datasets/text.py", "fish_speech/text/clean.py")


def _stub(name: str, **attrs) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod


def _package(name: str, path: Path) -> None:
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod


def _no_rearrange(*args, **kwargs):
    raise NotImplementedError("einops is not installed (only the training forward of the original needs it)")


def load_reference(root: str | Path) -> types.SimpleNamespace:
    """Modules ``llama``, ``generate`` and ``quantize`` of the original at ``root``."""
    root = Path(root).resolve()
    missing = [p for p in NEEDED if not (root / p).is_file()]
    if missing:
        raise SystemExit(f"--reference {root} is not a fish-speech v1.1.2 checkout (missing {', '.join(missing)})")
    _stub("einops", rearrange=_no_rearrange)
    _stub("loguru", logger=logging.getLogger("fish_speech"))
    _stub("transformers", AutoTokenizer=None)
    for name, sub in [("fish_speech", "fish_speech"), ("fish_speech.models", "fish_speech/models"),
                      ("fish_speech.models.text2semantic", "fish_speech/models/text2semantic"),
                      ("fish_speech.datasets", "fish_speech/datasets"), ("tools", "tools"),
                      ("tools.llama", "tools/llama")]:
        _package(name, root / sub)
    src = (root / "fish_speech/datasets/text.py").read_text(encoding="utf-8")
    consts = {k: int(v) for k, v in re.findall(r"^(CODEBOOK_\w+_TOKEN_ID)\s*=\s*(\d+)", src, re.M)}
    text_mod = types.ModuleType("fish_speech.datasets.text")
    text_mod.__dict__.update(consts)
    sys.modules["fish_speech.datasets.text"] = text_mod
    inductor = torch._inductor.config
    saved = {k: getattr(inductor, k) for k in ("coordinate_descent_tuning", "fx_graph_cache") if hasattr(inductor, k)}
    try:  # generate.py sets global inductor flags at import; keep ours unchanged
        llama = importlib.import_module("fish_speech.models.text2semantic.llama")
        generate = importlib.import_module("tools.llama.generate")
        quantize = importlib.import_module("tools.llama.quantize")
    finally:
        for k, v in saved.items():
            setattr(inductor, k, v)
    generate.tqdm = lambda it, **kwargs: it  # no progress bar inside timed loops
    return types.SimpleNamespace(llama=llama, generate=generate, quantize=quantize, root=root)


def reference_model(ref: types.SimpleNamespace, config: dict, state_dict: dict, mode: str = "fp32"):
    """The original DualARTransformer at ``config`` (ModelArgs fields) holding ``state_dict``'s weights.

    ``mode="int8"``: cast to bfloat16 and converted with the original's ``WeightOnlyInt8QuantHandler``
    (its CPU runtime: bf16 activations, ``F.linear(x, w.to(bf16)) * scales``).
    """
    args = ref.llama.DualARModelArgs(**config)
    model = ref.llama.DualARTransformer(args)
    model.load_state_dict({k: v.detach().contiguous() for k, v in state_dict.items()}, strict=True)
    model = model.eval()
    if mode == "int8":
        model = model.to(torch.bfloat16)
        handler = ref.quantize.WeightOnlyInt8QuantHandler(model)
        sd = handler.create_quantized_state_dict()
        model = handler.convert_for_runtime()
        model.load_state_dict(sd, assign=True)
        model = model.to(torch.bfloat16)
    return model


def reference_decode(ref, model, prompt: torch.Tensor, max_new_tokens: int) -> int:
    """Run the original ``generate`` (eager, its decode loop); returns the number of columns it produced."""
    params = {k: torch.tensor(v) for k, v in dict(temperature=0.7, top_p=0.7, repetition_penalty=1.5).items()}
    seq = ref.generate.generate(model=model, prompt=prompt, max_new_tokens=max_new_tokens, eos_token_id=1,
                                im_end_id=4, decode_one_token=ref.generate.decode_one_token_ar, **params)
    return seq.size(1) - prompt.size(1)
