#!/usr/bin/env python
"""The vocoders side by side with Fish Speech v1.1.2: same size, same weights, one process, alternating rounds.

    .venv/bin/python benchmarks/vocoder_v112.py --reference ~/src/fish-speech   # a v1.1.2 checkout you fetched

Builds the original's modules from ``--reference`` (never shipped or downloaded by this project) at the
official sizes with random weights, gives exactly those weights to ours through our loaders, checks that
both produce the same waveform, then times them in alternating rounds (original, ours, original, ...) and
prints the ratio of the best rounds:

* **Firefly vocoder** (``firefly-gan-base-generator.ckpt``: ConvNeXt backbone + HiFi-GAN head), mel → wave.
  The original as ``FireflyBase`` runs it: weight norm removed at load.
* **VITS HiFi-GAN** (``dec`` of ``vits_decoder_v1.1.ckpt``, ~95 % of a VITS decode's FLOPs), latent → wave.
  The original as its tools run it (weight norm hooks live, recomputed per call) and, for a fair bound,
  after its own ``remove_weight_norm()``.

``--precision bf16|auto`` loads ours in that precision (``precision=`` of the infer config); on a CPU
without native bf16 ``auto`` stays fp32. Only ``torch`` is needed besides the checkout: the original's
imports that these two modules do not use (its quantizer, spectrogram, ``vqgan`` package) are stand-ins.
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_v112 import _package  # noqa: E402

from speechlm.config import compose_preset  # noqa: E402
from speechlm.models.firefly.loading import load_firefly  # noqa: E402
from speechlm.models.hifigan.generator import HiFiGANGenerator  # noqa: E402
from speechlm.models.precision import apply_precision  # noqa: E402
from speechlm.checkpoints import fold_weight_norm_keys  # noqa: E402

HOP, SR = 512, 44100
NEEDED = ("fish_speech/models/vqgan/modules/firefly.py", "fish_speech/models/vits_decoder/modules/models.py")


def load_original(root: Path) -> types.SimpleNamespace:
    """The original's ``firefly`` and ``vits_decoder.modules.models`` modules from a v1.1.2 checkout."""
    root = root.resolve()
    missing = [p for p in NEEDED if not (root / p).is_file()]
    if missing:
        raise SystemExit(f"--reference {root} is not a fish-speech v1.1.2 checkout (missing {', '.join(missing)})")
    for name in ("fish_speech", "fish_speech.models", "fish_speech.models.vqgan", "fish_speech.models.vqgan.modules",
                 "fish_speech.models.vits_decoder", "fish_speech.models.vits_decoder.modules", "fish_speech.utils"):
        _package(name, root / name.replace(".", "/"))
    # stand-ins for what vq_encoder.py imports but Generator never uses (they pull in vector_quantize_pytorch,
    # torchaudio and matplotlib)
    for name, attr in [("fish_speech.models.vqgan.modules.fsq", "DownsampleFiniteScalarQuantize"),
                       ("fish_speech.utils.spectrogram", "LogMelSpectrogram"),
                       ("fish_speech.models.vqgan.utils", "sequence_mask")]:
        mod = types.ModuleType(name)
        setattr(mod, attr, None)
        sys.modules[name] = mod
    firefly = importlib.import_module("fish_speech.models.vqgan.modules.firefly")
    models = importlib.import_module("fish_speech.models.vits_decoder.modules.models")
    return types.SimpleNamespace(firefly=firefly, models=models)


class OriginalFirefly(torch.nn.Module):
    """``FireflyBase`` without its checkpoint download: the same two parts under the same names, same forward."""

    def __init__(self, ff, cfg):
        super().__init__()
        b, h = cfg.backbone, cfg.head
        self.backbone = ff.ConvNeXtEncoder(input_channels=b.input_channels, depths=list(b.depths),
                                           dims=list(b.dims), drop_path_rate=b.drop_path_rate,
                                           kernel_size=b.kernel_size)
        self.head = ff.HiFiGANGenerator(hop_length=h.hop_length, upsample_rates=list(h.upsample_rates),
                                        upsample_kernel_sizes=list(h.upsample_kernel_sizes),
                                        resblock_kernel_sizes=list(h.resblock_kernel_sizes),
                                        resblock_dilation_sizes=[list(d) for d in h.resblock_dilation_sizes],
                                        num_mels=h.num_mels, upsample_initial_channel=h.upsample_initial_channel,
                                        use_template=False, pre_conv_kernel_size=h.pre_conv_kernel_size,
                                        post_conv_kernel_size=h.post_conv_kernel_size)

    def forward(self, x):
        return self.backbone_head(x)

    def backbone_head(self, x):
        return self.head(self.backbone(x))


def firefly_pair(orig, precision: str, folder: Path):
    cfg = compose_preset("firefly", "firefly_gan_base")
    theirs = OriginalFirefly(orig.firefly, cfg).eval()
    path = folder / "firefly.ckpt"
    torch.save(theirs.state_dict(), path)  # weight-normed keys, as the official file stores them
    theirs.head.remove_parametrizations()  # what FireflyBase does after loading
    ours = load_firefly(cfg, path, "cpu", precision=precision)
    return theirs, ours, cfg.backbone.input_channels


def vits_dec_pair(orig, precision: str):
    c = compose_preset("vits", "vits_decoder_v1_1")
    args = dict(resblock_kernel_sizes=list(c.resblock_kernel_sizes),
                resblock_dilation_sizes=[list(d) for d in c.resblock_dilation_sizes],
                upsample_rates=list(c.upsample_rates), upsample_initial_channel=c.upsample_initial_channel,
                upsample_kernel_sizes=list(c.upsample_kernel_sizes))
    theirs = orig.models.Generator(c.inter_channels, str(c.resblock), gin_channels=c.gin_channels, **args).eval()
    ours = HiFiGANGenerator(c.inter_channels, args["upsample_initial_channel"], args["upsample_rates"],
                            args["upsample_kernel_sizes"], args["resblock_kernel_sizes"],
                            args["resblock_dilation_sizes"], resblock=str(c.resblock), gin_channels=c.gin_channels)
    ours.load_state_dict(fold_weight_norm_keys(theirs.state_dict()), strict=True)  # what load_vits does
    ours.eval().requires_grad_(False)
    apply_precision(ours, precision, (torch.randn(1, c.inter_channels, 16), torch.randn(1, c.gin_channels, 1)))
    return theirs, ours, c.inter_channels, c.gin_channels


CLOCK = time.perf_counter


def best_alternating(fns: dict, rounds: int) -> dict:
    """Best time (``CLOCK``) of each callable over ``rounds`` alternating rounds (after one warm-up each)."""
    with torch.inference_mode():
        for fn in fns.values():
            fn()
        best = {k: math.inf for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                t = CLOCK()
                fn()
                best[k] = min(best[k], CLOCK() - t)
    return best


def snr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    err = (ref.float().flatten() - x.float().flatten()).pow(2).mean()
    return float(10 * torch.log10(ref.float().pow(2).mean() / err.clamp_min(1e-30)))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, required=True, help="a local fish-speech v1.1.2 checkout")
    ap.add_argument("--seconds", type=float, default=5.0, help="audio per call")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32", help="ours")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time, one thread (for a machine shared with other jobs)")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK, args.threads = time.process_time, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    orig = load_original(args.reference)
    frames = round(args.seconds * SR / HOP)
    print(f"CPU: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.seconds:g} s of audio per call, best of {args.rounds} alternating rounds ({args.clock} clock), "
          f"ours: {args.precision}\n")
    print("| module | v1.1.2 s | speechlm s | speed-up | v1.1.2 x real time | speechlm x real time | SNR ours vs v1.1.2 |")
    print("|---|---|---|---|---|---|---|")

    def row(name, t_ref, t_ours, snr):
        rt = lambda t: args.seconds / t  # noqa: E731
        print(f"| {name} | {t_ref:.3f} | {t_ours:.3f} | **{t_ref / t_ours:.2f}x** | {rt(t_ref):.1f}x | "
              f"{rt(t_ours):.1f}x | {snr:.0f} dB |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        theirs, ours, n_mels = firefly_pair(orig, args.precision, Path(tmp))
    mel = torch.randn(1, n_mels, frames)
    with torch.inference_mode():
        snr = snr_db(theirs(mel), ours(mel))
    best = best_alternating({"ref": lambda: theirs(mel), "ours": lambda: ours(mel)}, args.rounds)
    row("Firefly vocoder (backbone + head)", best["ref"], best["ours"], snr)
    del theirs, ours

    theirs, ours, c_in, gin = vits_dec_pair(orig, args.precision)
    z, g = torch.randn(1, c_in, frames), torch.randn(1, gin, 1)
    with torch.inference_mode():
        snr = snr_db(theirs(z, g=g), ours(z, g=g))
    best = best_alternating({"ref": lambda: theirs(z, g=g), "ours": lambda: ours(z, g=g)}, args.rounds)
    row("VITS HiFi-GAN `dec` (weight norm live, as v1.1.2 runs it)", best["ref"], best["ours"], snr)
    theirs.remove_weight_norm()
    best = best_alternating({"ref": lambda: theirs(z, g=g), "ours": lambda: ours(z, g=g)}, args.rounds)
    row("VITS HiFi-GAN `dec` (v1.1.2 weight norm removed: its best case)", best["ref"], best["ours"], snr)


if __name__ == "__main__":
    main()
