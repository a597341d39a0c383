#!/usr/bin/env python
"""Codec speed on CPU at the official sizes with random weights.

Measures VQGAN encode (mel + WaveNet encoder + FSQ), VQGAN decode (codes -> mel) and the Firefly vocoder
(mel -> waveform), plus VITS decode when available: wall time, real-time factor, and achieved FLOP/s
(counted with ``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions) as a fraction of
a large fp32 matrix multiply timed in the same run (the machine's compute bound). ``--long-seconds``
adds the peak memory of encoding / decoding a long input through ``VQGANCodec``, each in a fresh
process.

    .venv/bin/python benchmarks/codec.py                       # 10 s of audio, all threads
    .venv/bin/python benchmarks/codec.py --long-seconds 600    # + bounded-memory check on 10 minutes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from common import count_flops, profile, speechlike  # noqa: E402  (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SR = 44100
PRESETS = ["model/vqgan=group_fsq_2x1024", "model/firefly=firefly_gan_base", "model/vits=vits_decoder_v1_1"]


def _both_clocks(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def matmul_bound(n: int = 2048, repeats: int = 10) -> tuple[float, float]:
    """Best fp32 FLOP/s of an ``n x n @ n x n`` matmul, per wall second and per CPU second."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    walls, cpus = zip(*(_both_clocks(lambda: torch.mm(a, b)) for _ in range(repeats)))
    return 2 * n**3 / min(walls), 2 * n**3 / min(cpus)




def measure(fn: Callable[[], object], repeats: int) -> dict:
    """Best wall / CPU seconds of ``fn`` and of the matmul bound, over ``repeats`` rounds after a warm-up.

    Each round times the bound right before the stage, so both see the same machine state; on a shared
    machine the least disturbed round is kept. CPU seconds (all threads) are what the work itself
    cost, so the CPU-time fraction stays meaningful when other processes take cores away.
    """
    fn()
    stage, bound = [], []
    for _ in range(repeats):
        bound.append(matmul_bound(repeats=3))
        stage.append(_both_clocks(fn))
    return {"wall_s": min(w for w, _ in stage), "cpu_s": min(c for _, c in stage),
            "bound_wall": max(b for b, _ in bound), "bound_cpu": max(c for _, c in bound)}






def build(area: str):
    from hydra.utils import instantiate

    from speechlm.config import compose

    cfg = compose("infer", PRESETS)
    net = instantiate(cfg.model[area]).eval()
    return net, cfg


def bench_codec_networks(seconds: float, repeats: int, bound: float, do_profile: bool = False,
                         precision: str = "fp32") -> list[dict]:
    from speechlm.models.precision import PROBE_FRAMES, apply_precision

    vqgan, _ = build("vqgan")
    vocoder, _ = build("firefly")
    chosen = apply_precision(vocoder, precision, (torch.randn(1, 128, PROBE_FRAMES),))
    audio = speechlike(seconds)[None, None]
    lengths = torch.tensor([audio.shape[-1]])
    with torch.inference_mode():
        codes, feat = vqgan.encode(audio, lengths)
        mel = vqgan.decode(codes, feat)
    stages = {
        "VQGAN encode (mel + encoder + FSQ)": lambda: vqgan.encode(audio, lengths),
        "VQGAN decode (codes -> mel)": lambda: vqgan.decode(codes, feat),
        f"Firefly vocoder (mel -> wave, {precision} -> {str(chosen).removeprefix('torch.')})": lambda: vocoder(mel),
    }
    rows = []
    for name, fn in stages.items():
        with torch.inference_mode():
            flops = count_flops(fn)
            m = measure(fn, repeats)
            if do_profile:
                profile(name, fn)
        rows.append(row(name, seconds, flops, m, bound))
        print(fmt_row(rows[-1]), flush=True)
    return rows


VITS_TEXT = ("This is a benchmark sentence for the VITS decoder, long enough to match about ten seconds of "
             "speech, spoken at a calm and steady pace by a cloned voice.")


def bench_vits(seconds: float, repeats: int, bound: float, precision: str = "fp32") -> list[dict]:
    """VITS decode at the official size (random weights): codes + text + a cached reference -> waveform."""
    from torch.nn.utils.parametrize import is_parametrized, remove_parametrizations

    from speechlm.models.precision import PROBE_FRAMES, apply_precision
    from speechlm.models.weight_norm import remove_all_weight_norm
    from speechlm.stages.decode import VITSSynthesizer

    net, _ = build("vits")
    remove_all_weight_norm(net)
    for m in net.modules():  # inference folds weight norm at load; do the same for the random weights
        if is_parametrized(m, "weight"):
            remove_parametrizations(m, "weight")
    dec = net.eval().dec
    chosen = apply_precision(dec, precision, (torch.randn(1, dec.conv_pre.in_channels, PROBE_FRAMES),
                                              torch.randn(1, dec.cond.in_channels, 1)))
    synth = VITSSynthesizer(net)
    tokens = int(seconds * SR / synth.samples_per_code)
    codes = torch.randint(0, net.vq.n_codes, (net.vq.n_groups, tokens))
    reference = speechlike(5.0, seed=1)
    fn = lambda: synth.decode(codes, VITS_TEXT, reference)  # noqa: E731 - the timbre is cached after warm-up
    fn()
    with torch.inference_mode():
        flops = count_flops(fn)
        m = measure(fn, repeats)
    r = row(f"VITS decode (codes + text -> wave, dec {precision} -> {str(chosen).removeprefix('torch.')})",
            tokens * synth.samples_per_code / SR, flops, m, bound)
    print(fmt_row(r), flush=True)
    return [r]


def row(name: str, seconds: float, flops: int, m: dict, bound: tuple[float, float]) -> dict:
    bound_wall, bound_cpu = max(bound[0], m["bound_wall"]), max(bound[1], m["bound_cpu"])
    return {"stage": name, "audio_s": seconds, "wall_s": m["wall_s"], "cpu_s": m["cpu_s"],
            "x_realtime": seconds / m["wall_s"], "gflop": flops / 1e9, "gflops_per_s": flops / m["wall_s"] / 1e9,
            "bound_gflops": bound_wall / 1e9, "fraction_of_bound": flops / m["wall_s"] / bound_wall,
            "fraction_of_bound_cpu": flops / m["cpu_s"] / bound_cpu}


HEADER = ("| stage | wall s | speed | GFLOP | GFLOP/s | bound GFLOP/s | of bound (wall) | of bound (CPU time) |\n"
          "|---|---|---|---|---|---|---|---|")


def fmt_row(r: dict) -> str:
    return (f"| {r['stage']} | {r['wall_s']:.2f} | {r['x_realtime']:.1f}x | {r['gflop']:.0f} | "
            f"{r['gflops_per_s']:.1f} | {r['bound_gflops']:.0f} | {100 * r['fraction_of_bound']:.0f} % | "
            f"{100 * r['fraction_of_bound_cpu']:.0f} % |")


# ---------------------------------------------------------------------------------- memory (long input)
def _write_random_checkpoints(folder: Path) -> tuple[Path, Path]:
    """Random official-size checkpoints in the official layouts (flat VQGAN dict; weight-normed Firefly)."""
    vq_path, ff_path = folder / "vqgan.pth", folder / "firefly.ckpt"
    if not vq_path.exists():
        vqgan, _ = build("vqgan")
        torch.save(vqgan.state_dict(), vq_path)
        vocoder, _ = build("firefly")
        vocoder.head.apply_weight_norm()
        torch.save(vocoder.state_dict(), ff_path)
    return vq_path, ff_path


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_probe(stage: str, seconds: float, folder: str) -> None:
    """Run in a child process: peak RSS of one long encode or decode through ``VQGANCodec``."""
    from speechlm.config import compose
    from speechlm.stages.codec import VQGANCodec

    torch.set_grad_enabled(False)
    cfg = compose("infer", PRESETS)
    vq_path, ff_path = _write_random_checkpoints(Path(folder))
    codec = VQGANCodec.from_config(cfg.model.vqgan, vq_path, device=torch.device("cpu"), dtype=torch.float32)
    if stage == "decode":
        from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder

        codec = FireflyDecoder.from_config(None, None, cfg.model.firefly, ff_path, codec=codec)
    if stage == "encode":
        audio = speechlike(seconds)
        data = audio.numel() * 4
        base = _rss_mib()
        t = time.perf_counter()
        codec.encode(audio)
    else:
        codes = torch.randint(0, 1000, (2, int(seconds * SR / 2048)))
        data = codes.shape[1] * 2048 * 4  # the output waveform
        base = _rss_mib()
        t = time.perf_counter()
        codec.decode(codes)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "seconds": seconds, "wall_s": wall, "rss_before_mib": base,
                      "peak_rss_mib": peak, "peak_over_base_mib": peak - base, "io_mib": data / 2**20}))


def bench_memory(seconds_list: list[float]) -> list[dict]:
    try:
        from speechlm.stages.codec import VQGANCodec  # noqa: F401
    except ImportError:
        print("memory: speechlm.stages.codec.VQGANCodec not available yet; skipped")
        return []
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for seconds in seconds_list:
            for stage in ("encode", "decode"):
                r = subprocess.run([sys.executable, __file__, "--_probe", stage, str(seconds), folder],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"memory probe {stage} {seconds}s failed:\n{r.stderr[-2000:]}")
                    continue
                res = json.loads(r.stdout.strip().splitlines()[-1])
                out.append(res)
                print(f"| {stage} | {seconds:.0f} s | {res['wall_s']:.1f} s ({seconds / res['wall_s']:.1f}x) | "
                      f"{res['peak_over_base_mib']:.0f} MiB | {res['io_mib']:.0f} MiB |", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="audio length for the speed table")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--long-seconds", type=float, nargs="*", default=[], help="long inputs for the memory table")
    p.add_argument("--no-vits", action="store_true")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler operator table per stage")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="compute precision of the vocoders (Firefly, VITS dec); see speechlm.models.precision")
    p.add_argument("--_probe", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._probe:
        stage, seconds, folder = args._probe
        memory_probe(stage, float(seconds), folder)
        return
    bound = matmul_bound()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; fp32 matmul bound {bound[0] / 1e9:.1f} GFLOP/s; {args.seconds:g} s of audio")
    print(HEADER)
    rows = bench_codec_networks(args.seconds, args.repeats, bound, args.profile, args.precision)
    if not args.no_vits:
        rows += bench_vits(args.seconds, args.repeats, bound, args.precision)
    print(f"matmul bound re-measured after the run: {matmul_bound()[0] / 1e9:.1f} GFLOP/s; load average "
          f"{os.getloadavg()[0]:.1f}")
    mem = []
    if args.long_seconds:
        print("| stage | input | wall | peak RSS over baseline | input/output size |\n|---|---|---|---|---|")
        mem = bench_memory(args.long_seconds)
    if args.json:
        args.json.write_text(json.dumps({"bound_gflops": bound[0] / 1e9, "rows": rows, "memory": mem}, indent=1))


if __name__ == "__main__":
    main()
