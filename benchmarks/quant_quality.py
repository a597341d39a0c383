#!/usr/bin/env python
"""Per-step logits of an int8 (or int4) model against the same fp32 model, KV-cache decoding (random weights).

Both models see the same prompt (a 10 s reference's worth of codes + text) and then the same teacher
columns (random codes), step by step: prefill, then ``--steps`` decode steps, each
with a slow step and NC fast steps. Per step it reports, for the text logits and every codebook's
logits: max |diff|, relative error ||diff|| / ||fp32||, and whether the argmax agrees.

    .venv/bin/python benchmarks/quant_quality.py --preset dual_ar_2_codebook_medium --steps 8
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import prompt_grid, random_model  # noqa: E402
from speechlm.models.text2semantic.quantize import Int8Linear, quantize_int4, to_int8_model  # noqa: E402


@torch.inference_mode()
def step_logits(model, prompt: torch.Tensor, columns: torch.Tensor) -> list[list[torch.Tensor]]:
    """[[text logits, cb0 logits, ...] per step]: prefill over ``prompt`` (1+NC, T), then one step per column."""
    nc = model.config.num_codebooks
    t = prompt.size(1)
    model.setup_caches(1, t + columns.size(1) + 1)
    out = []
    feed = [prompt] + [columns[:, i: i + 1] for i in range(columns.size(1))]
    pos = torch.arange(t)
    for i, x in enumerate(feed):
        slow = model.forward_generate(x[None], pos, kv_len=int(pos[-1]) + 1)
        logits = [slow.token_logits[0, -1].float()]
        h = slow.hidden_states
        target = columns[:, i] if i < columns.size(1) else columns[:, -1]
        for cb in range(nc):
            lg = model.forward_generate_fast(h, torch.tensor([cb]), cb + 1)[0, -1]
            logits.append(lg.float())
            h = model.fast_embeddings(target[cb + 1].view(1))  # teacher forcing: the same code for both
        out.append(logits)
        pos = torch.tensor([int(pos[-1]) + 1])
    return out


def compare(ref, other) -> list[dict]:
    rows = []
    for i, (a_step, b_step) in enumerate(zip(ref, other)):
        for j, (a, b) in enumerate(zip(a_step, b_step)):
            d = (b - a)
            rows.append(dict(step=i, head="text" if j == 0 else f"cb{j - 1}", max_abs=float(d.abs().max()),
                             rel=float(d.norm() / a.norm()), argmax=bool(a.argmax() == b.argmax()),
                             scale=float(a.abs().max())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dual_ar_2_codebook_medium")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompt-frames", type=int, default=215)
    ap.add_argument("--modes", default="int8,int8:fp32,int8:bf16,int8:int8pack,int8:fbgemm")
    args = ap.parse_args()
    ref = random_model(args.preset, torch.float32, 2048)
    prompt = prompt_grid(ref, args.prompt_frames)
    cols = torch.randint(2, ref.config.codebook_size, (1 + ref.config.num_codebooks, args.steps))
    cols[0] = 5  # <|semantic|>
    base = step_logits(ref, prompt, cols)
    print("| model | kernel | text rel. err (max) | codebook rel. err (max) | max abs diff / max abs logit | "
          "argmax agree |\n|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        kind, _, kernel = mode.partition(":")
        model = copy.deepcopy(ref)
        if kind == "int8":
            to_int8_model(model)
            if kernel:
                for m in model.modules():
                    if isinstance(m, Int8Linear):
                        m.prepare(kernel)
                    if getattr(m, "gate_up", None) is not None:
                        m.gate_up = None
        else:
            quantize_int4(model, 128, check_speed=False)  # quality only: CPU int4 is refused for speed
        rows = compare(base, step_logits(model, prompt, cols))
        text = [r for r in rows if r["head"] == "text"]
        cb = [r for r in rows if r["head"] != "text"]
        ratio = max(r["max_abs"] / r["scale"] for r in rows)
        agree = sum(r["argmax"] for r in rows)
        print(f"| {args.preset} {kind} | {kernel or 'measured'} | {max(r['rel'] for r in text):.4f} | "
              f"{max(r['rel'] for r in cb):.4f} | {ratio:.4f} | {agree}/{len(rows)} |", flush=True)
        del model


if __name__ == "__main__":
    main()
