"""Streamed vs one-pass decoder CPU time per second of audio, and the overlap context it costs.

For each decoder (random weights, ``--preset tiny`` or the official sizes), decodes ``--columns`` random
code columns once in one pass and once as a stream (``--chunk`` columns per window, one column pushed
at a time as the token loop does), and reports CPU seconds (process time, all threads) per second of
audio, their ratio (target <= 1.25), and the stream's error against the one-pass decode in dB (>= 30).
Then ``--batch`` windows of concurrent requests, decoded one call each vs one batched call.
It sweeps the context each window re-decodes: VITS the prior's left context in columns
(``--prior-context``), Firefly a fraction of the networks' receptive fields (``--firefly-context``).

Examples:
    .venv/bin/python benchmarks/stream_decode.py --preset tiny --columns 110
    .venv/bin/python benchmarks/stream_decode.py --preset official --columns 215 --prior-context 16,32,64
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from hydra.utils import instantiate

from speechlm.models.vits.loading import build_vits, remove_all_weight_norm
from speechlm.stages.codec import VQGANCodec
from speechlm.stages.decode import VITSSynthesizer
from speechlm.stages.decoders import vits, vqgan_firefly
from speechlm.stages.decoders.vits import VITSDecoder
from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder
from speechlm.stages.streaming import StreamingDecoder
from speechlm.testing.tiny_codec import compose_model_preset, randomize_

PRESETS = {"tiny": {"vits": "tiny", "vqgan": "tiny", "firefly": "tiny"},
           "official": {"vits": "vits_decoder_v1_1", "vqgan": "group_fsq_2x1024", "firefly": "firefly_gan_base"}}
TEXT = "A sentence long enough for ten seconds of speech, read at an ordinary pace by the speaker."


def build(name: str, preset: str):
    """A decoder with every weight redrawn (O(1) activations, so the audio depends on the codes)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if name == "vits":
            m = build_vits(compose_model_preset("vits", PRESETS[preset]["vits"]), with_posterior=False,
                           with_vq_encoder=False)
            remove_all_weight_norm(m)
            randomize_(m, g)
            m.dec.conv_post.weight.mul_(0.3)
            return VITSDecoder(VITSSynthesizer(m.eval()))
        vq = randomize_(instantiate(compose_model_preset("vqgan", PRESETS[preset]["vqgan"])), g).eval()
        voc = randomize_(instantiate(compose_model_preset("firefly", PRESETS[preset]["firefly"])), g).eval()
        voc.head.conv_post.weight.mul_(0.3)
        return FireflyDecoder(VQGANCodec(vq), voc)


def cpu(fn, repeats: int):
    """(result, least CPU seconds, least wall seconds) over ``repeats`` runs (the machine may be shared)."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        t0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        best_cpu, best_wall = min(best_cpu, time.process_time() - t0), min(best_wall, time.perf_counter() - w0)
    return out, best_cpu, best_wall


def stream(decoder, codes, chunk: int, context: tuple):
    kw = dict(text=TEXT, seed=3)
    if decoder.name == "vits":
        windows = decoder.windows(**kw, prior_context_tokens=int(context[0]), context=context[1])
    else:
        windows = decoder.windows(**kw, context=context[0])
    sd = StreamingDecoder(windows, chunk)
    out = []
    for i in range(codes.shape[1]):
        out += sd.push(codes[:, i])
    return np.concatenate(out + sd.flush())


def batched(decoder, codes, rows: int, chunk: int, repeats: int) -> dict:
    """CPU time of ``rows`` concurrent requests' steady-state windows: one call each vs one batched call."""
    from speechlm.stages.decoders.base import WindowJob

    jobs = [WindowJob(decoder.windows(text=TEXT, seed=10 + r, noise_scale=0.5), codes, 2 * chunk, 3 * chunk + 1)
            for r in range(rows)]
    _, alone, _ = cpu(lambda: [j.windows.window(j.codes, j.lo, j.hi) for j in jobs], repeats)
    _, together, _ = cpu(lambda: decoder.decode_windows(jobs), repeats)
    return {"decoder": decoder.name, "windows": rows, "one_by_one_cpu_s": round(alone, 4),
            "batched_cpu_s": round(together, 4), "speedup": round(alone / together, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    ap.add_argument("--decoders", default="vits,vqgan")
    ap.add_argument("--columns", type=int, default=110, help="code columns (21.5 per second of audio)")
    ap.add_argument("--chunk", type=int, default=22)
    ap.add_argument("--prior-context", default=str(vits.PRIOR_CONTEXT_TOKENS), help="VITS prior left context sweep (columns)")
    ap.add_argument("--vits-context", default=str(vits.STREAM_CONTEXT), help="VITS flow/HiFi-GAN context sweep (receptive-field fraction)")
    ap.add_argument("--firefly-context", default=str(vqgan_firefly.STREAM_CONTEXT), help="Firefly context sweep (receptive-field fraction)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (the least time is kept)")
    ap.add_argument("--batch", type=int, default=4, help="concurrent windows for the batched-window measurement")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print(json.dumps({"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "preset": args.preset, "columns": args.columns, "chunk": args.chunk}))
    for name in args.decoders.split(","):
        decoder = build(name, args.preset)
        codes = torch.randint(0, decoder.codebook_size, (decoder.num_groups, args.columns),
                              generator=torch.Generator().manual_seed(1))
        decoder.decode(codes[:, :8], text=TEXT, seed=3)  # warm up
        ref, one_cpu, one_wall = cpu(lambda: decoder.decode(codes, text=TEXT, seed=3).numpy(), args.repeats)
        seconds = len(ref) / decoder.sample_rate
        if name == "vits":  # prior columns x flow/HiFi-GAN fraction
            sweep = [(int(p), float(c)) for p in args.prior_context.split(",") for c in args.vits_context.split(",")]
        else:
            sweep = [(float(c),) for c in args.firefly_context.split(",")]
        for ctx in sweep:
            out, s_cpu, s_wall = cpu(lambda: stream(decoder, codes, args.chunk, ctx), args.repeats)
            err = np.sum((ref - out).astype(np.float64) ** 2)
            db = float("inf") if err == 0 else 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / err)
            print(json.dumps({"decoder": name, "context": ctx, "audio_s": round(seconds, 2),
                              "one_pass_cpu_per_audio_s": round(one_cpu / seconds, 4),
                              "stream_cpu_per_audio_s": round(s_cpu / seconds, 4),
                              "ratio": round(s_cpu / one_cpu, 3), "stream_vs_one_pass_db": round(db, 1),
                              "one_pass_wall_s": round(one_wall, 3), "stream_wall_s": round(s_wall, 3)}))
        if args.batch > 1:
            print(json.dumps(batched(decoder, codes, args.batch, args.chunk, args.repeats)))


if __name__ == "__main__":
    main()
