#!/usr/bin/env python
"""Parity and speed on one device (CUDA if present, else CPU): the Python half of ``gpu_check.sh``.

Sections (each prints one line per result, or ``SKIP``/``FAIL`` with the reason, and never stops the rest):
``parity``  the tiny fixtures on the device: fp32 (TF32 off) at 1e-3, bf16 and the original's bf16 int8 at 5e-2;
``decode``  medium decode tokens/s with random weights at batch 1: eager, compiled (CUDA graphs), int8, int4;
``batch``   aggregate tokens/s of the engine with 8 and 32 concurrent requests (compiled: padded buckets);
``reference`` with ``--reference DIR``: the original v1.1.2 decode compiled as its ``generate.py`` does
            (``reduce-overhead``, ``fullgraph``, its inductor flags) beside ours compiled, same weights;
``vocoders`` VITS and Firefly real-time factor at the official sizes (random weights): one pass, one stream
window alone and ``--windows`` (8) concurrent windows batched in one call; peak GPU memory.

    python benchmarks/device_check.py --sections parity,decode,vocoders [--device cuda] [--tokens 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def section(name):
    def wrap(fn):
        def run(*a, **k):
            print(f"\n## {name}", flush=True)
            try:
                fn(*a, **k)
            except Exception as e:  # report and continue: the script must finish on any machine
                print(f"FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                traceback.print_exc(limit=2, file=sys.stdout)
        return run
    return wrap


@section("parity (tiny fixtures on the device)")
def parity(device, args):
    from omegaconf import OmegaConf

    from speechlm.models.text2semantic.loading import load_text2semantic

    tiny = Path(os.environ.get("SPEECHLM_REFERENCE", "../shared/reference")) / "text2semantic" / "tiny"
    if not (tiny / "config.json").is_file():
        print(f"SKIP parity: no fixtures at {tiny} (set SPEECHLM_REFERENCE)")
        return
    conf = json.loads((tiny / "config.json").read_text())
    cfg = OmegaConf.create({"_target_": f"speechlm.models.text2semantic.llama.{conf['model_class']}",
                            "config": {"_target_": "speechlm.models.text2semantic.config.ModelArgs",
                                       **conf["constructor_kwargs"]}})
    g = dict(np.load(tiny / "tiny-goldens.npz"))
    g8 = dict(np.load(tiny / "tiny-int8-goldens.npz"))
    torch.backends.cuda.matmul.allow_tf32 = False
    inp = torch.from_numpy(g["a_input"]).long().to(device)
    cases = [("fp32", conf["checkpoint"], torch.float32, None, g["a_token_logits"], 1e-3),
             ("bf16", conf["checkpoint"], torch.bfloat16, None, g["a_token_logits"], 5e-2),
             ("int8 file, bf16 (original runtime)", "tiny.int8.pth", torch.bfloat16, None,
              g8["int8_bf16_token_logits"], 5e-2),
             ("quantize=int8, bf16", conf["checkpoint"], torch.bfloat16, "int8", g8["int8_bf16_token_logits"], 5e-2)]
    for name, file, dtype, quantize, gold, tol in cases:
        model = load_text2semantic(cfg, tiny / file, device=device, dtype=dtype, quantize=quantize)
        with torch.inference_mode():
            out = model(inp).token_logits.float().cpu()
        err = float((out - torch.from_numpy(gold)).abs().max())
        print(f"{'PASS' if err <= tol else 'FAIL'} {name}: max |logits - golden| = {err:.2e} (tolerance {tol:g})")


def _decode_rate(model, prompt, tokens, compile, repeats=2):
    """Tokens/s of one request through the engine (prefill excluded)."""
    from speechlm.stages.token_loop import generate_columns

    p = {k: torch.tensor(v, device=prompt.device) for k, v in dict(temperature=0.7, top_p=0.7,
                                                                     repetition_penalty=1.5).items()}
    kw = dict(eos_id=1, im_end_id=4, compile=compile, ignore_stop=True, **p)
    best = 0.0
    for _ in range(repeats):
        _sync(prompt.device)
        t0 = time.perf_counter()
        generate_columns(model, prompt, 2, **kw)
        _sync(prompt.device)
        t1 = time.perf_counter()
        generate_columns(model, prompt, tokens + 2, **kw)
        _sync(prompt.device)
        t2 = time.perf_counter()
        best = max(best, tokens / max((t2 - t1) - (t1 - t0), 1e-9))
    return best


@section("decode (random weights)")
def decode(device, args):
    from generate import prompt_grid, random_model
    from speechlm.models.text2semantic.quantize import quantize_int4, to_int8_model
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for mode in args.modes.split(","):
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            model = random_model(args.preset, torch.float32, 2048).to(device=device, dtype=dtype)
            if mode == "int8":
                to_int8_model(model)
            elif mode == "int4":
                quantize_int4(model, 128)
            prompt = prompt_grid(model, 215).to(device)
            t0 = time.perf_counter()
            step = mode != "eager"  # int8 / int4 run compiled too
            if step:
                # compile + warm-up at the timed cache size (CUDA graph capture; a larger cache recompiles)
                _decode_rate(model, prompt, args.tokens, step, 1)
            warm = time.perf_counter() - t0
            rate = _decode_rate(model, prompt, args.tokens, step)
            mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            print(f"{args.preset} {mode:8s} {str(dtype).replace('torch.', '')}: {rate:7.1f} tokens/s "
                  f"(compile/warm-up {warm:.0f} s, peak GPU memory {mem:.2f} GiB)", flush=True)
            del model
        except Exception as e:
            print(f"FAIL decode {mode}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")


@section("batch (concurrent requests through one engine)")
def batch(device, args):
    from generate import prompt_grid, random_model
    from speechlm.stages.engine import Engine
    from speechlm.stages.sampling import SamplingParams

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = random_model(args.preset, torch.float32, 2048).to(device=device, dtype=dtype)
    prompt = prompt_grid(model, 215).to(device)
    compile = device.type == "cuda"
    params = SamplingParams.make(0.7, 0.7, 1.5, device)
    for rows in [int(r) for r in args.rows.split(",")]:
        engine = Engine(model, rows, compile=compile, cache_len=prompt.size(1) + args.tokens + 8)

        def run(n):
            futures = [engine.submit(prompt, n, params=params, eos_id=-1, im_end_id=-1, ignore_stop=True)
                       for _ in range(rows)]
            engine.run_until_idle()
            return sum(f.result().size(1) for f in futures)

        t0 = time.perf_counter()
        run(4)  # compile / capture this bucket and the smaller ones it passes through as rows leave
        warm = time.perf_counter() - t0
        _sync(device)
        t0 = time.perf_counter()
        n = run(args.tokens)
        _sync(device)
        wall = time.perf_counter() - t0
        print(f"{args.preset} {str(dtype).replace('torch.', '')} {'compiled' if compile else 'eager'} "
              f"{rows:3d} concurrent: {n / wall:8.1f} tokens/s in all ({n / wall / rows:.1f} per request; "
              f"prefill included; warm-up {warm:.0f} s)", flush=True)


@section("reference v1.1.2 compiled beside ours (same weights)")
def reference(device, args):
    if not args.reference:
        print("SKIP reference: pass --reference DIR (a fish-speech v1.1.2 checkout)")
        return
    from generate import prompt_grid, random_model
    from reference_v112 import load_reference, reference_model
    from speechlm.config import compose_preset

    ref = load_reference(args.reference)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = random_model(args.preset, torch.float32, 2048)
    sd = {k: v.contiguous() for k, v in base.state_dict().items()}
    cfg = compose_preset("text2semantic", args.preset, ["config.max_seq_len=2048"])
    config = {k: v for k, v in dict(cfg.config).items() if k != "_target_"}
    theirs = reference_model(ref, config, sd, "fp32").to(device=device, dtype=dtype)
    ours = base.to(device=device, dtype=dtype)
    prompt = prompt_grid(ours, 215).to(device)
    inductor = torch._inductor.config
    # what its generate.py sets at import (restored afterwards)
    flags = {(inductor, "coordinate_descent_tuning"): True, (inductor, "fx_graph_cache"): True,
             (inductor.triton, "unique_kernel_names"): True}
    saved = {key: getattr(*key) for key in flags}
    for (obj, name), v in flags.items():
        setattr(obj, name, v)
    try:
        step = torch.compile(ref.generate.decode_one_token_ar, mode="reduce-overhead", fullgraph=True)
        p = {k: torch.tensor(v, device=device) for k, v in dict(temperature=0.7, top_p=0.7,
                                                                  repetition_penalty=1.5).items()}

        def theirs_run(n):
            seq = ref.generate.generate(model=theirs, prompt=prompt, max_new_tokens=n, eos_token_id=-1, im_end_id=-1,
                                        decode_one_token=step, **p)
            return seq.size(1) - prompt.size(1)

        rates = {}
        for name, run in [("v1.1.2 compiled", theirs_run), ("speechlm compiled", None)]:
            if run is None:
                _decode_rate(ours, prompt, args.tokens, True, 1)  # compile + capture
                rates[name] = _decode_rate(ours, prompt, args.tokens, True)
                continue
            run(2), run(args.tokens + 2)  # compile + capture both cache sizes (its caches are sized per call)
            best = 0.0
            for _ in range(2):
                _sync(device)
                t0 = time.perf_counter()
                run(2)
                _sync(device)
                t1 = time.perf_counter()
                n = run(args.tokens + 2)
                _sync(device)
                best = max(best, (n - 2) / max(time.perf_counter() - t1 - (t1 - t0), 1e-9))
            rates[name] = best
    finally:
        for (obj, name), v in saved.items():
            setattr(obj, name, v)
    for name, rate in rates.items():
        print(f"{args.preset} {str(dtype).replace('torch.', '')} batch 1 {name}: {rate:7.1f} tokens/s")
    print(f"ratio speechlm / v1.1.2: {rates['speechlm compiled'] / max(rates['v1.1.2 compiled'], 1e-9):.2f}x")


@section("vocoders (official sizes, random weights)")
def vocoders(device, args):
    from e2e import official_checkpoints
    from speechlm.config import compose
    from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder
    from speechlm.stages.decode import VITSSynthesizer
    from speechlm.stages.decoders.vits import VITSDecoder

    paths = official_checkpoints(Path(args.workdir) / "official")
    cfg = compose("infer", ["model/vqgan=group_fsq_2x1024", "model/firefly=firefly_gan_base",
                            "model/vits=vits_decoder_v1_1"])
    frames = int(args.seconds * 44100 / 2048)
    vits = VITSSynthesizer.from_config(cfg.model.vits, paths["vits"], device=device)
    codec = FireflyDecoder.from_config(cfg.model.vqgan, paths["vqgan"], cfg.model.firefly, paths["firefly"],
                                       device=device)
    ids = min(VITSDecoder(vits).codebook_size, codec.codebook_size)  # the codec's ids (1000), not the LLM's 1024
    codes = torch.randint(0, ids, (2, frames))
    text = "a sentence long enough for ten seconds of speech, read at an ordinary pace by the speaker"
    for name, fn in [("VITS decode", lambda: vits.decode(codes, text)), ("VQGAN decode + Firefly", lambda: codec.decode(codes))]:
        fn()
        _sync(device)
        t0 = time.perf_counter()
        audio = fn()
        _sync(device)
        wall = time.perf_counter() - t0
        seconds = audio.shape[-1] / 44100
        print(f"{name}: {seconds:.1f} s of audio in {wall:.3f} s = RTF {wall / seconds:.4f} ({seconds / wall:.0f}x real time)")
    _windows_rtf(device, [VITSDecoder(vits), codec], codes, rows=args.windows)
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def _windows_rtf(device, decoders, codes, rows: int, chunk: int = 22) -> None:
    """Streaming windows: one request's window alone, then ``rows`` concurrent requests' windows decoded in
    one batched call (``Decoder.decode_windows``, each row its own seed); RTF = wall / audio seconds."""
    from speechlm.stages.decoders.base import WindowJob

    text = "a sentence long enough for a few windows of speech"
    for dec in decoders:
        jobs = [WindowJob(dec.windows(text=text, seed=10 + r, noise_scale=0.5), codes, 2 * chunk, 3 * chunk + 1)
                for r in range(rows)]
        for label, batch in (("1 window", jobs[:1]), (f"{rows} windows batched", jobs)):
            dec.decode_windows(batch)  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            out = dec.decode_windows(batch)
            _sync(device)
            wall = time.perf_counter() - t0
            seconds = sum(o.shape[-1] for o in out) / 44100
            print(f"{dec.name} stream windows, {label}: {seconds:.2f} s of audio in {wall:.3f} s = RTF "
                  f"{wall / seconds:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sections", default="parity,decode,batch,vocoders")
    ap.add_argument("--rows", default="8,32", help="batch: concurrent requests")
    ap.add_argument("--reference", default=None, help="reference: a fish-speech v1.1.2 checkout")
    ap.add_argument("--preset", default="dual_ar_2_codebook_medium")
    ap.add_argument("--modes", default="eager,compiled,int8,int4")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--windows", type=int, default=8, help="vocoders: concurrent stream windows batched in one call")
    ap.add_argument("--workdir", default="/tmp/speechlm-e2e")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'no CUDA'}), "
          f"torch {torch.__version__}")
    for name in args.sections.split(","):
        {"parity": parity, "decode": decode, "batch": batch, "reference": reference,
         "vocoders": vocoders}[name](device, args)


if __name__ == "__main__":
    main()
