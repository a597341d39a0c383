#!/usr/bin/env python
"""How often the int8 kernel probe changes its mind on the running (possibly busy) machine.

For each weight shape it runs the probe ``--repeats`` times (process cache cleared, disk cache off) with
two methods and counts the winners:

* ``mean3``: the previous method (mean time of a pass over the copies, best of 3 interleaved rounds);
* ``min``: today's (:func:`speechlm.models.text2semantic.kernels.choose_kernel`: fastest call of a pass,
  interleaved rotating rounds until the leader holds, minimum kept).

A stable method names the same kernel every time; the load average is printed before and after.
Then it times one decision with the disk cache cold and warm (what a second load pays).

    .venv/bin/python benchmarks/probes.py --size small --repeats 3      # a dry run
    .venv/bin/python benchmarks/probes.py --size medium --repeats 6
    .venv/bin/python benchmarks/probes.py --load dual_ar_2_codebook_small   # model load: cold vs warm cache
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from speechlm import probes  # noqa: E402
from speechlm.models.text2semantic import kernels  # noqa: E402
from speechlm.models.text2semantic.quantize import quantize_per_channel_int8  # noqa: E402

# (out, in) of the per-layer linears at batch 1: wqkv, wo, fused w1|w3, w2
SHAPES = {
    "small": [(2304, 768), (768, 768), (4096, 768), (768, 2048)],
    "medium": [(3072, 1024), (1024, 1024), (5632, 1024), (1024, 2816)],
}


def _mean3(q, s, names) -> str:
    """The previous probe: mean seconds per call over a pass, best of 3 interleaved rounds."""
    device = q.device
    ok = [n for n in names if kernels._probe(n, q, s, device) <= kernels.MAX_REL_ERROR]
    states = {n: kernels._states(n, q.size(0), q.size(1), device) for n in ok}
    x = torch.randn(1, q.size(1))

    def mean_pass(n):
        run = kernels.KERNELS[n].run
        t0 = time.perf_counter()
        for st in states[n]:
            run(x, st)
        return (time.perf_counter() - t0) / len(states[n])

    for n in ok:
        mean_pass(n)
    times = {n: math.inf for n in ok}
    for _ in range(3):
        for n in ok:
            times[n] = min(times[n], mean_pass(n))
    return min(times, key=times.get)


def _min(q, s, names) -> str:
    kernels._CACHE.clear()
    return kernels.choose_kernel(q, s, names)


def _one_load(preset: str) -> None:
    """In a fresh process: build a random ``preset`` model quantized to int8 as a load does; print seconds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate import random_model

    t0 = time.perf_counter()
    random_model(preset, torch.float32, 512, "int8")
    print(f"{time.perf_counter() - t0:.2f}")


def _loads(preset: str) -> None:
    """The same model load twice, each in a new process, sharing one probe cache folder (cold, then warm)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SPEECHLM_PROBE_CACHE=tmp)
        for label in ("cold", "warm", "warm"):
            out = subprocess.run([sys.executable, __file__, "--one-load", preset], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()[-1]
            print(f"{preset} random weights, quantize=int8 load ({label} probe cache): {out} s; "
                  f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SHAPES), default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--load", metavar="PRESET", help="time a model load with the probe cache cold and warm")
    ap.add_argument("--one-load", metavar="PRESET", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_load:
        return _one_load(args.one_load)
    if args.load:
        return _loads(args.load)
    names = kernels.candidates(torch.device("cpu"))
    print(f"cpu: {probes.machine()['cpu']}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"candidates {', '.join(names)}; load average before {os.getloadavg()}")
    probes.configure(None, "off")
    print("| shape | method | winners over repeats | s per decision |\n|---|---|---|---|")
    for out_f, in_f in SHAPES[args.size]:
        q, s = quantize_per_channel_int8(torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(0)))
        for label, fn in (("mean3", _mean3), ("min", _min)):
            t0 = time.perf_counter()
            wins = collections.Counter(fn(q, s, names) for _ in range(args.repeats))
            per = (time.perf_counter() - t0) / args.repeats
            print(f"| {out_f}x{in_f} | {label} | {dict(wins.most_common())} | {per:.2f} |")
    with tempfile.TemporaryDirectory() as tmp:
        probes.configure(tmp, "use")
        q, s = quantize_per_channel_int8(torch.randn(*SHAPES[args.size][0]))
        for label in ("cold (measured)", "warm (disk cache)"):
            kernels._CACHE.clear()
            t0 = time.perf_counter()
            kernels.choose_kernel(q, s, names)
            print(f"one decision, {label}: {time.perf_counter() - t0:.3f} s")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
