#!/usr/bin/env python
"""Continuous batching at the step level: aggregate tokens/s of the :class:`Engine` with B concurrent
requests vs one request (a batch of one), eager or ``--compile`` (padded buckets); random weights, no
HTTP, no decoder, stop rule off.

    .venv/bin/python benchmarks/batch_steps.py --preset dual_ar_2_codebook_medium --quantize int8 --rows 1,2,4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import random_model  # noqa: E402
from speechlm.stages.engine import Engine  # noqa: E402
from speechlm.stages.sampling import SamplingParams  # noqa: E402
from speechlm.stages.token_loop import generate_columns  # noqa: E402

PARAMS = dict(temperature=0.7, top_p=0.7, repetition_penalty=1.5)
NEVER = dict(eos_id=-1, im_end_id=-1)  # ids no column holds: with ignore_stop every request runs its budget


def prompt(t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, 1000, (3, t), generator=g)  # text ids and codebook values valid in every preset
    return x


def single(model, tokens: int, t: int) -> float:
    start = time.perf_counter()
    generate_columns(model, prompt(t, 0), tokens, ignore_stop=True, **NEVER,
                     **{k: torch.tensor(v) for k, v in PARAMS.items()})
    return tokens / (time.perf_counter() - start)


def batched(model, rows: int, tokens: int, t: int, cache_len: int, compile: bool = False) -> float:
    engine = Engine(model, rows, cache_len=cache_len, compile=compile)
    if compile:  # compile this bucket first (not timed)
        for i in range(rows):
            engine.submit(prompt(t, i), 3, params=SamplingParams.make(**PARAMS), ignore_stop=True, **NEVER)
        engine.run_until_idle()
    futures = [engine.submit(prompt(t + 3 * i, i), tokens, params=SamplingParams.make(**PARAMS),
                             generator=torch.Generator().manual_seed(i), ignore_stop=True, **NEVER)
               for i in range(rows)]
    start = time.perf_counter()
    engine.run_until_idle()
    wall = time.perf_counter() - start
    return sum(f.result().size(1) for f in futures) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dual_ar_2_codebook_medium")
    ap.add_argument("--quantize", choices=["int8", "int4"], default=None)
    ap.add_argument("--rows", default="1,2,4")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64, help="prompt columns (each row a few more)")
    ap.add_argument("--compile", action="store_true", help="compiled step (static shapes, padded buckets)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = random_model(args.preset, torch.float32, 2048, quantize=args.quantize)
    print(f"model ready in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    cache_len = args.prompt + 64 + args.tokens
    single(model, 4, args.prompt)  # warm-up
    base = single(model, args.tokens, args.prompt)
    rows = {"one request": base}
    for b in [int(r) for r in args.rows.split(",")]:
        rows[f"engine, {b} request(s)"] = batched(model, b, args.tokens, args.prompt, cache_len, args.compile)
        print(json.dumps({k: round(v, 2) for k, v in rows.items()}), file=sys.stderr, flush=True)
    print(f"| {args.preset} {args.quantize or 'fp32'} | tokens/s (all rows) | × one request |\n|---|---|---|")
    for name, tps in rows.items():
        print(f"| {name} | {tps:.1f} | {tps / base:.2f} |")


if __name__ == "__main__":
    main()
