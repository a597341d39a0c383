#!/usr/bin/env python
"""Text-to-semantic decode / prefill speed on CPU against the machine's own bounds (random weights).

Decoding one column at batch 1 reads every weight once (the fast transformer once per codebook), so
its bound is ``bytes read per token / memory bandwidth``; the bandwidth is measured in the same run
with an fp32 matrix-vector product over the same number of bytes. Prefill (a ~10 s reference prompt
plus text) is compared with the FLOP/s of a large fp32 matrix multiply.

    .venv/bin/python benchmarks/generate.py --preset dual_ar_2_codebook_small
    .venv/bin/python benchmarks/generate.py --preset dual_ar_2_codebook_medium --dtypes fp32,bf16,int8

``--reference DIR`` (a local fish-speech v1.1.2 checkout the user fetched) instead builds the original's
model at the same size with the same weights and times its decode loop beside ours in the same process,
alternating rounds (eager, fp32 and int8), and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from speechlm.config import compose_preset  # noqa: E402
from speechlm.stages.token_loop import generate_columns  # noqa: E402
from speechlm.models.text2semantic.loading import build_text2semantic  # noqa: E402
from speechlm.models.text2semantic.quantize import quantize_int4, to_int8_model  # noqa: E402
from speechlm.text.prompt import encode_prompt  # noqa: E402
from speechlm.text.tokenizer import build_tokenizer  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32, "int4": torch.float32}
TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the forest "
        "where nobody can find it again.")


def random_model(preset: str, dtype: torch.dtype, max_seq_len: int, quantize: str | None = None):
    model = build_text2semantic(compose_preset("text2semantic", preset, [f"config.max_seq_len={max_seq_len}"]), "meta")
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.ones_like(p) if name.endswith("norm.weight") else torch.randn(p.shape, generator=g) * 0.02)
    model.rebuild_buffers("cpu")
    model = model.to(dtype).eval()
    if quantize == "int8":
        to_int8_model(model)  # as load_text2semantic(quantize="int8"): kernels chosen by measurement
    elif quantize == "int4":
        quantize_int4(model)
    model.use_column_major_weights()  # as SemanticGenerator does on CPU
    return model


def bytes_per_token(model) -> int:
    """Weights read to produce one column, as stored (int8: 1 byte each): slow stack + head once,
    fast stack + head once per codebook (embedding tables excluded: one row each)."""
    sd = model.state_dict()
    nbytes = {n: t.numel() * t.element_size() for n, t in sd.items() if not n.endswith("embeddings.weight")}
    slow = sum(b for n, b in nbytes.items() if not n.startswith("fast_"))
    fast = sum(b for n, b in nbytes.items() if n.startswith("fast_"))
    return slow + model.config.num_codebooks * fast


CLOCK = time.perf_counter  # --clock cpu: time.process_time (with one thread: robust to other processes)


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def bandwidth(nbytes: int, repeats: int = 7, threads: int | None = None) -> float:
    """Bytes/s of an fp32 matrix-vector product reading ``nbytes`` of matrix (best of ``repeats``)."""
    cols = 4096
    rows = max(nbytes // (4 * cols), 1)
    w, x = torch.randn(rows, cols), torch.randn(cols)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        torch.mv(w, x)
        return rows * cols * 4 / best_time(lambda: torch.mv(w, x), repeats)
    finally:
        torch.set_num_threads(before)


def matmul_flops(n: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / best_time(lambda: a @ b, repeats)


def prompt_grid(model, frames: int) -> torch.Tensor:
    tok = build_tokenizer()
    nc, top = model.config.num_codebooks, model.config.codebook_size - 2
    ref = torch.randint(0, top, (nc, frames), generator=torch.Generator().manual_seed(1))
    a = encode_prompt(tok, TEXT, bos=True, prompt_tokens=ref, num_codebooks=nc)
    b = encode_prompt(tok, TEXT, bos=False, num_codebooks=nc)
    return torch.cat([a, b], dim=1)


def measure_decode(model, prompt, tokens: int, compile: bool, repeats: int, threads: int | None) -> float:
    """Decode tokens/s of the engine at batch 1 (prefill excluded): time of N + 1 columns minus time of 1."""
    p = {k: torch.tensor(v) for k, v in dict(temperature=0.7, top_p=0.7, repetition_penalty=1.5).items()}
    kw = dict(eos_id=1, im_end_id=4, compile=compile, ignore_stop=True, decode_threads=threads, **p)
    one = best_time(lambda: generate_columns(model, prompt, 1, **kw), repeats)
    full = best_time(lambda: generate_columns(model, prompt, tokens + 1, **kw), repeats)
    return tokens / max(full - one, 1e-9)


def time_reference_pair(ours, ref_mod, ref_model, prompt, tokens: int, rounds: int, threads) -> tuple[float, float]:
    """Decode tokens/s of ours and of the original, alternating rounds; (N - 2) / (t(N) - t(2)) each, best of rounds."""
    from reference_v112 import reference_decode

    p = {k: torch.tensor(v) for k, v in dict(temperature=0.7, top_p=0.7, repetition_penalty=1.5).items()}
    kw = dict(eos_id=1, im_end_id=4, ignore_stop=True, decode_threads=threads, **p)
    best = {"ours": 0.0, "v1.1.2": 0.0}
    for _ in range(rounds):
        for name in best:
            if name == "ours":
                run = lambda n: (generate_columns(ours, prompt, n, **kw).size(1))  # noqa: E731
            else:
                run = lambda n: reference_decode(ref_mod, ref_model, prompt, n)  # noqa: E731
            t0 = CLOCK()
            run(2)
            t1 = CLOCK()
            n = run(tokens)
            t2 = CLOCK()
            if n > 2:
                best[name] = max(best[name], (n - 2) / max((t2 - t1) - (t1 - t0), 1e-9))
    return best["ours"], best["v1.1.2"]


def compare_with_reference(args) -> None:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # the original's decode loop draws a tqdm bar
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reference_v112 import load_reference, reference_model

    ref = load_reference(args.reference)
    cfg = compose_preset("text2semantic", args.preset, ["config.max_seq_len=2048"])
    config = {k: v for k, v in dict(cfg.config).items() if k != "_target_"}
    print("| preset | dtype | v1.1.2 tok/s | speechlm tok/s | ratio |\n|---|---|---|---|---|")
    for name in args.dtypes.split(","):
        if name not in ("fp32", "int8"):
            continue
        base = random_model(args.preset, torch.float32, 2048)
        sd = {k: v.contiguous() for k, v in base.state_dict().items()}
        del base
        ref_model = reference_model(ref, config, sd, "int8" if name == "int8" else "fp32")
        del sd
        ours = random_model(args.preset, torch.float32, 2048, quantize=name if name == "int8" else None)
        prompt = prompt_grid(ours, args.prompt_frames)
        threads = args.decode_threads or torch.get_num_threads()
        a, b = time_reference_pair(ours, ref, ref_model, prompt, args.tokens, args.repeats, threads)
        print(f"| {args.preset} | {name} (v1.1.2: {'bf16 int8' if name == 'int8' else 'fp32'}) | {b:.2f} | {a:.2f} "
              f"| {a / max(b, 1e-9):.2f}x |", flush=True)
        del ref_model, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dual_ar_2_codebook_small")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompt-frames", type=int, default=215, help="reference codes (~21.5 frames per second)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (prefill); default: torch's")
    ap.add_argument("--decode-threads", type=int, default=None,
                    help="threads of the per-token steps; default: what SemanticGenerator picks (auto)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time with one thread everywhere (for a machine shared with other jobs)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reference", type=Path, default=None,
                    help="a local fish-speech v1.1.2 checkout: time its decode beside ours (same weights)")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK, args.threads, args.decode_threads = time.process_time, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference:
        return compare_with_reference(args)
    rows = []
    flops_bound = matmul_flops()
    decode_threads = args.decode_threads or torch.get_num_threads()
    for name in args.dtypes.split(","):
        if name == "bf16" and not torch.backends.mkldnn.is_available():
            continue
        dtype = DTYPES[name]
        model = random_model(args.preset, dtype, max_seq_len=2048, quantize=name if name.startswith("int") else None)
        prompt = prompt_grid(model, args.prompt_frames)
        t = prompt.size(1)
        nbytes = bytes_per_token(model)
        bw = max(bandwidth(nbytes, threads=n) for n in sorted({1, torch.get_num_threads()}))
        bound = bw / nbytes
        # prefill: one cached forward over the whole prompt
        model.setup_caches(1, t + args.tokens + 2)
        with torch.inference_mode():
            pre = best_time(lambda: model.forward_generate(prompt[None], torch.arange(t)), args.repeats)
        slow_params = sum(p.numel() for n, p in model.state_dict().items()
                          if n.endswith(".weight") and not n.startswith("fast_") and n != "embeddings.weight")
        pre_flops = 2 * slow_params * t / pre
        row = dict(preset=args.preset, dtype=name, clock=args.clock, threads=torch.get_num_threads(),
                   decode_threads=decode_threads,
                   bytes_per_token=nbytes,
                   bandwidth_GBps=bw / 1e9, bound_tok_s=bound, prompt_tokens=t, prefill_s=pre,
                   prefill_GFLOPs=pre_flops / 1e9, matmul_GFLOPs=flops_bound / 1e9,
                   prefill_frac=pre_flops / flops_bound if name == "fp32" else None)
        modes = [("eager", False)] + ([] if args.no_compile else [("compiled", True)])
        for mode, step in modes:
            if mode == "compiled":
                t0 = time.perf_counter()
                measure_decode(model, prompt, 2, step, 1, decode_threads)
                row["compile_s"] = time.perf_counter() - t0
            tps = measure_decode(model, prompt, args.tokens, step, args.repeats, decode_threads)
            row[f"{mode}_tok_s"] = tps
            row[f"{mode}_frac"] = tps / bound
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| preset | dtype | clock | threads (prefill/decode) | MB/token | GB/s (matvec) | bound tok/s | eager tok/s | eager % | "
          "compiled tok/s | compiled % | prefill T | prefill s | prefill GFLOP/s | matmul GFLOP/s | prefill % |")
    print("|" + "---|" * 16)
    for r in rows:
        def f(k, fmt="{:.1f}"):
            return fmt.format(r[k]) if r.get(k) is not None else "-"
        pct = (lambda k: f"{100 * r[k]:.0f}%" if r.get(k) is not None else "-")
        print(f"| {r['preset']} | {r['dtype']} | {r['clock']} | {r['threads']}/{r['decode_threads']} | {r['bytes_per_token'] / 1e6:.0f} | {f('bandwidth_GBps')} "
              f"| {f('bound_tok_s')} | {f('eager_tok_s')} | {pct('eager_frac')} | {f('compiled_tok_s')} | "
              f"{pct('compiled_frac')} | {r['prompt_tokens']} | {f('prefill_s', '{:.3f}')} | {f('prefill_GFLOPs')} | "
              f"{f('matmul_GFLOPs')} | {pct('prefill_frac')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
