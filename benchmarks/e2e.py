#!/usr/bin/env python
"""The whole ``task=tts`` path, timed: reference encode + text2semantic + decoder (random weights).

``--size tiny`` uses the test pipeline's tiny checkpoints; ``--size official`` writes random checkpoints
at the official sizes (text2semantic ``dual_ar_2_codebook_medium``, VQGAN + Firefly, VITS) into
``--workdir`` once. Prints RTF (wall seconds per second of audio), generation tokens/s, time to first
audio (``TTS.stream``: first chunk) and peak RSS, as one JSON line and a Markdown row.

Also measured: time to first audio for a *saved voice* (the reference encoded once, then two requests:
the first prefills its prompt, the second finds it in the prefix KV cache), and ``--segments N``: a text
of N sentences, one segment each, with every later segment's tokens/s against the first's (earlier
segments come from the prefix cache instead of being prefilled again).

    .venv/bin/python benchmarks/e2e.py --size official --quantize int8 --decoder vits
    .venv/bin/python benchmarks/e2e.py --size official --quantize int8 --segments 7 --max-new-tokens 40
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SR, speechlike  # noqa: E402
from speechlm.config import compose, compose_preset, quote  # noqa: E402

TEXT = ("The old lighthouse keeper climbed the winding stairs each evening, lit the great lamp, and watched the "
        "ships pass safely through the fog.")  # 140 characters
OFFICIAL = {"text2semantic": "dual_ar_2_codebook_medium", "vqgan": "group_fsq_2x1024", "firefly": "firefly_gan_base",
            "vits": "vits_decoder_v1_1"}


def official_checkpoints(folder: Path) -> dict[str, Path]:
    """Random checkpoints at the official sizes in each slot's official envelope (written once)."""
    from hydra.utils import instantiate

    from generate import random_model
    from speechlm.testing.tiny_codec import randomize_

    folder.mkdir(parents=True, exist_ok=True)
    paths = {slot: folder / f"random-{name}.pth" for slot, name in OFFICIAL.items()}
    gen = torch.Generator().manual_seed(0)
    if not paths["text2semantic"].is_file():
        model = random_model(OFFICIAL["text2semantic"], torch.float32, 4096)
        torch.save({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, paths["text2semantic"])
    for slot in ("vqgan", "firefly", "vits"):
        if paths[slot].is_file():
            continue
        model = randomize_(instantiate(compose_preset(slot, OFFICIAL[slot])), gen)
        if slot == "firefly":
            model.head.apply_weight_norm()
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if slot == "vits":
            sd = {"state_dict": {f"generator.{k}": v for k, v in sd.items()}}
        torch.save(sd, paths[slot])
    return paths


def build(args):
    from speechlm.pipeline import TTS
    from speechlm.stages.generate import SemanticGenerator
    from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

    if args.size == "tiny":
        overrides = tiny_overrides(make_tiny_checkpoints(args.workdir / "tiny"), args.workdir / "cache")
        overrides = [o for o in overrides if not o.startswith(("max_new_tokens", "device="))]
    else:
        paths = official_checkpoints(args.workdir / "official")
        overrides = [f"model/{slot}={name}" for slot, name in OFFICIAL.items()]
        overrides += [f"checkpoints.{slot}={quote(str(p))}" for slot, p in paths.items()]
        overrides += [f"cache_dir={quote(str(args.workdir / 'cache'))}"]
    if args.prefix_cache_mb is not None:
        overrides += [f"prefix_cache_mb={args.prefix_cache_mb}"]
    cfg = compose("infer", ["task=tts", "text=hello", f"decoder={args.decoder}", f"compile={args.compile}",
                           f"device={args.device}"] + overrides
                  + ([f"quantize={args.quantize}"] if args.quantize else []))
    t0 = time.perf_counter()
    tts = TTS.from_config(cfg)
    if args.quantize and not any("Int" in type(m).__name__ for m in tts.generator.model.modules()):
        # until the pipeline passes cfg.quantize to the loader: build the generator with it here
        tts.generator = SemanticGenerator.from_config(cfg.model.text2semantic, cfg.checkpoints.text2semantic,
                                                      device=tts.device, dtype=tts.dtype, quantize=args.quantize,
                                                      compile=args.compile)
    return tts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "official"], default="tiny")
    ap.add_argument("--quantize", choices=["int8", "int4"], default=None)
    ap.add_argument("--decoder", choices=["vits", "vqgan"], default="vits")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--reference-seconds", type=float, default=10.0)
    ap.add_argument("--max-new-tokens", type=int, default=150)
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/speechlm-e2e"))
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--stop-rule", action="store_true",
                    help="keep the EOS stop rule (default: off, each segment generates --max-new-tokens columns)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--stream-chunk-tokens", type=int, default=22,
                    help="columns per streamed chunk; time to first audio = prefill + this many columns + decode")
    ap.add_argument("--prefix-cache-mb", type=float, default=None, help="0 = off; default: the config's (auto)")
    ap.add_argument("--segments", type=int, default=0, help="N > 0: the N-segment benchmark instead")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from speechlm.audio.io import save_audio

    if not args.stop_rule:
        # random weights emit EOS at random steps: without this every run would time a different length
        import speechlm.stages.token_loop as token_loop

        token_loop._is_stop = lambda *a, **k: False
    tts, load_s = build(args)
    ref = save_audio(args.workdir / f"reference-{args.reference_seconds:g}s.wav",
                     speechlike(args.reference_seconds).numpy(), SR)
    if args.segments:
        return segments_benchmark(tts, ref, args)
    kw = dict(reference_audio=str(ref), reference_text="a reference sentence read aloud for the voice", seed=0,
              max_new_tokens=args.max_new_tokens, stream_chunk_tokens=args.stream_chunk_tokens)
    t0 = time.perf_counter()
    first = None
    samples = tokens = 0
    for chunk in tts.stream(args.text, **kw):
        first = first if first is not None else time.perf_counter() - t0
        samples += len(chunk.audio)
        tokens += chunk.tokens
    wall = time.perf_counter() - t0
    audio_s = samples / tts.sample_rate
    saved = saved_voice_ttfa(tts, ref, args)
    row = dict(size=args.size, quantize=args.quantize, decoder=args.decoder, compile=args.compile,
               threads=torch.get_num_threads(), load_s=load_s, reference_s=args.reference_seconds,
               text_chars=len(args.text), tokens=tokens, audio_s=audio_s, wall_s=wall,
               rtf=wall / max(audio_s, 1e-9), tokens_per_s=tokens / max(wall, 1e-9), first_audio_s=first,
               stream_chunk_tokens=args.stream_chunk_tokens, saved_voice_first_audio_s=saved,
               peak_rss_GB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(json.dumps(row), flush=True)
    print("| size | quantize | decoder | tokens | audio s | wall s | RTF | tokens/s (whole path) | TTFA s | "
          "saved voice TTFA s (cold / cached) | peak RSS GB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.size} | {args.quantize or 'fp32'} | {args.decoder} | {tokens} | {audio_s:.2f} | {wall:.2f} | "
          f"{row['rtf']:.2f} | {row['tokens_per_s']:.1f} | {first:.2f} | {saved[0]:.2f} / {saved[1]:.2f} | "
          f"{row['peak_rss_GB']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(row, indent=1))


def first_audio(tts, text: str, **kw) -> float:
    """Seconds until ``TTS.stream`` yields its first chunk (the rest is drained, untimed)."""
    t0 = time.perf_counter()
    chunks = tts.stream(text, **kw)
    next(chunks)
    seconds = time.perf_counter() - t0
    for _ in chunks:
        pass
    return seconds


def saved_voice_ttfa(tts, ref_path, args) -> tuple[float, float]:
    """Time to first audio of a saved voice (encoded once): its first request, then a second one (cached)."""
    voice = tts.encode_reference(str(ref_path), "a saved voice reading its reference sentence")
    kw = dict(reference=voice, seed=1, max_new_tokens=args.stream_chunk_tokens + 4,
              stream_chunk_tokens=args.stream_chunk_tokens)
    return first_audio(tts, "Good morning.", **kw), first_audio(tts, "Good evening to you.", **kw)


def segments_benchmark(tts, ref_path, args) -> None:
    """N one-sentence segments with a reference: each segment's tokens/s (prefill included) vs the first."""
    voice = tts.encode_reference(str(ref_path), "a reference sentence read aloud for the voice")
    text = " ".join(f"Sentence number {i + 1} is spoken here." for i in range(args.segments))
    prompts, _ = tts._prompts([voice])
    t0 = time.perf_counter()
    rows = [(s.index + 1, s.num_tokens, s.seconds) for s in tts.generator.generate(
        text, **prompts, params=tts.defaults.replace(seed=0, chunk_length=50, max_new_tokens=args.max_new_tokens),
        progress=False)]
    wall = time.perf_counter() - t0
    first = rows[0][1] / rows[0][2]
    engine = tts.generator.engine
    print(json.dumps(dict(segments=rows, wall_s=wall, threads=torch.get_num_threads(), quantize=args.quantize,
                          prefix_cache_mb=engine.prefix_cache.limit / 2**20, prefix_hits=engine.prefix_cache.hits,
                          prefilled_tokens=engine.prefill_tokens, reused_tokens=engine.prefix_cache.reused_tokens)),
          flush=True)
    print("| segment | tokens | seconds | tokens/s | × first |\n|---|---|---|---|---|")
    for i, n, sec in rows:
        print(f"| {i} | {n} | {sec:.2f} | {n / sec:.1f} | {n / sec / first:.2f} |")


if __name__ == "__main__":
    main()
