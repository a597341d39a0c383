#!/usr/bin/env python
"""VITS decode speed on CPU at the official size (random weights, loaded like a real checkpoint).

Times ``VITSSynthesizer.decode(codes, text, reference)`` for ``--seconds`` of output (the reference's
timbre vector cached, as the TTS pipeline reuses it across segments) and reports the real-time
factor and the achieved FLOP/s — FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``
(matmuls and convolutions) — as a fraction of a large fp32 matrix multiply timed in the same run.

    .venv/bin/python benchmarks/vits.py                 # 10 s, all threads
    .venv/bin/python benchmarks/vits.py --profile       # + operator table

``bench_vits(seconds, repeats, bound)`` returns rows in the format of ``benchmarks/codec.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SR = 44100
TEXT = ("Fish Speech decodes semantic tokens with a VITS model; this sentence stands in for one "
        "segment of a long text, about ten seconds of speech when read aloud at a calm pace.")


def random_official_synthesizer(folder: Path):
    """A ``VITSSynthesizer`` at the official size with random weights, written and loaded like the real file."""
    from hydra.utils import instantiate

    from speechlm.cli import compose
    from speechlm.inference.vits import VITSSynthesizer

    cfg = compose("train", ["lit=vits", "model/vits=vits_decoder_v1_1"])
    path = folder / "vits-random.ckpt"
    if not path.exists():
        torch.manual_seed(0)
        gen = instantiate(cfg.model.vits, with_posterior=False, with_vq_encoder=False)
        with torch.no_grad():
            for c in gen.flow.flows[::2]:  # zero-initialised: would make the flow the identity
                c.post.weight.normal_(0, 0.02)
        torch.save({"state_dict": {f"generator.{k}": v for k, v in gen.state_dict().items()
                                   if not k.startswith("vq.quantizer.downsample")
                                   and ".project_in." not in k}}, path)
    return VITSSynthesizer.from_config(cfg.model.vits, path, device="cpu")


def bench_vits(seconds: float = 10.0, repeats: int = 3, bound: float = 0.0, do_profile: bool = False) -> list[dict]:
    from codec import count_flops, fmt_row, profile, row, speechlike, time_against_bound

    with tempfile.TemporaryDirectory() as tmp:
        synth = random_official_synthesizer(Path(tmp))
    tokens = round(seconds * SR / synth.samples_per_code)
    codes = torch.randint(0, 1000, (2, tokens), generator=torch.Generator().manual_seed(0))
    ref = speechlike(5.0)
    noise = torch.randn(1, synth.model.inter_channels, tokens * synth.model.vq.frames_per_code)
    synth.decode(codes[:, :4], TEXT, ref)  # fills the timbre cache

    def decode():
        return synth.decode(codes, TEXT, ref, noise=noise)

    with torch.inference_mode():
        flops = count_flops(decode)
        wall, stage_bound = time_against_bound(decode, repeats)
        if do_profile:
            profile("VITS decode", decode)
    r = row("VITS decode (codes + text + ref -> wave)", tokens * synth.samples_per_code / SR, wall, flops,
            max(bound, stage_bound))
    print(fmt_row(r), flush=True)
    return [r]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| stage | wall s | x real time | GFLOP | GFLOP/s | matmul bound GFLOP/s | of bound |")
    print("|---|---|---|---|---|---|---|")
    rows = bench_vits(args.seconds, args.repeats, 0.0, args.profile)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
