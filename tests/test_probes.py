"""Load-time probes on a busy machine: interleaved minimum timing, and decisions kept on disk (speechlm.probes)."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from speechlm import probes
from speechlm.errors import InputError
from speechlm.models import precision
from speechlm.models.text2semantic import kernels
from speechlm.models.text2semantic.quantize import quantize_per_channel_int8

# seconds of one call of each stand-in kernel on a quiet machine: "fast" is 20 % faster
QUIET_COST = {"fast": 1.0e-3, "slow": 1.2e-3}


class BusyClock:
    """A fake ``perf_counter`` on a loaded machine: a kernel call costs its quiet time times (1 + load), where
    the load comes in short bursts (other processes preempting the probe) and is 0 for a quarter of the calls.

    ``adversary``: the load falls on "fast" only (every one of its calls is slowed 3x).
    """

    def __init__(self, seed: int, quiet_share: float = 0.25, adversary: bool = False):
        self.now, self.calls = 0.0, 0
        self.rng = random.Random(seed)
        self.quiet_share, self.adversary = quiet_share, adversary
        self.load, self.burst_left = 0.0, 0

    def __call__(self) -> float:
        return self.now

    def spend(self, name: str) -> None:
        self.calls += 1
        if self.adversary:
            self.now += QUIET_COST[name] * (3.0 if name == "fast" else 1.0)
            return
        if self.burst_left == 0:  # the next 1-3 calls: undisturbed, or preempted (0.5x to 4x longer)
            self.burst_left = self.rng.randint(1, 3)
            self.load = 0.0 if self.rng.random() < self.quiet_share else self.rng.uniform(0.5, 4.0)
        self.burst_left -= 1
        self.now += QUIET_COST[name] * (1.0 + self.load)


@pytest.fixture
def stand_ins(monkeypatch):
    """Kernels "fast" and "slow" (both exact) that advance the injected clock instead of taking time."""
    clock = {"c": None}

    def kernel(name):
        def run(x, w):
            clock["c"].spend(name)
            return F.linear(x, w)

        return kernels.Kernel(kernels._fp32_prepare, run)

    monkeypatch.setitem(kernels.KERNELS, "fast", kernel("fast"))
    monkeypatch.setitem(kernels.KERNELS, "slow", kernel("slow"))
    monkeypatch.setattr(kernels, "_CACHE", {})
    monkeypatch.setattr(kernels, "_TIMES", {})
    load = {"v": 0.2}  # the load average per CPU the probe cache sees (pinned: the real one moves)
    monkeypatch.setattr(probes, "current_load", lambda: load["v"])

    def choose(c, rounds=3, names=("slow", "fast"), load_avg=0.2):
        clock["c"], load["v"] = c, load_avg
        kernels._CACHE.clear()
        q, s = quantize_per_channel_int8(torch.randn(40, 128, generator=torch.Generator().manual_seed(0)))
        return kernels.choose_kernel(q, s, list(names), rounds=rounds, clock=c)

    return choose


def _single_shot(clock: BusyClock) -> str:
    """What a probe that times each candidate once, one after the other, would pick (the naive way)."""
    times = {}
    for name in ("slow", "fast"):
        t0 = clock()
        for _ in range(8):
            clock.spend(name)
        times[name] = clock() - t0
    return min(times, key=times.get)


def test_noisy_probe_cannot_pick_the_kernel_a_quiet_measurement_found_slower(stand_ins, tmp_path):
    probes.configure(tmp_path, "off")
    assert stand_ins(BusyClock(0, quiet_share=1.0)) == "fast"  # the quiet measurement
    seeds = range(40)
    # the load is heavy enough to fool a one-shot probe often (21 of these 40 seeds)...
    assert sum(_single_shot(BusyClock(seed)) == "slow" for seed in seeds) >= 10
    # ...but never the interleaved minimum: load only adds time, and each candidate meets a quiet stretch
    assert [stand_ins(BusyClock(seed)) for seed in seeds] == ["fast"] * len(seeds)


def test_quiet_decision_is_kept_on_disk_and_reused_under_load(stand_ins, tmp_path):
    probes.configure(tmp_path, "use")
    quiet = BusyClock(0, quiet_share=1.0)
    assert stand_ins(quiet) == "fast" and quiet.calls > 0
    files = list((tmp_path / "probes").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["machine"] == probes.machine() and data["machine"]["torch"] == torch.__version__
    (key, entry), = data["decisions"].items()
    assert key.startswith("int8|40x128|torch.int8*") and f"threads={torch.get_num_threads()}" in key
    assert entry["choice"] == "fast" and entry["times"]["fast"] < entry["times"]["slow"]

    # the next load (a new process: no in-process memo) meets a machine where every "fast" call is slowed 3x
    adversary = BusyClock(1, adversary=True)
    assert stand_ins(adversary) == "fast" and adversary.calls == 1  # reused: one correctness check, no timing
    # refreshing measures again under that load, and keeps what it measured
    probes.configure(tmp_path, "refresh")
    assert stand_ins(BusyClock(1, adversary=True)) == "slow"
    probes.configure(tmp_path, "use")
    assert stand_ins(BusyClock(2, adversary=True)) == "slow"


def test_a_decision_made_under_load_is_replaced_on_a_quieter_machine(stand_ins, tmp_path):
    probes.configure(tmp_path, "use")
    assert stand_ins(BusyClock(0, adversary=True), load_avg=3.0) == "slow"  # fooled, and kept...
    assert stand_ins(BusyClock(1, adversary=True), load_avg=2.8) == "slow"  # ...while the machine stays busy
    quiet = BusyClock(2, quiet_share=1.0)
    assert stand_ins(quiet, load_avg=0.1) == "fast" and quiet.calls > 2  # clearly quieter: measured again
    busy = BusyClock(3, adversary=True)
    assert stand_ins(busy, load_avg=3.0) == "fast" and busy.calls == 1  # the quiet decision stays


def test_cached_choice_is_checked_before_use(stand_ins, tmp_path, monkeypatch):
    probes.configure(tmp_path, "use")
    assert stand_ins(BusyClock(0, quiet_share=1.0)) == "fast"
    # the cached kernel now computes a wrong product (a changed library): it is measured again, not trusted
    monkeypatch.setitem(kernels.KERNELS, "fast", kernels.Kernel(kernels._fp32_prepare, lambda x, w: 2 * F.linear(x, w)))
    assert stand_ins(BusyClock(0, quiet_share=1.0)) == "slow"


def test_other_machines_and_damaged_files_are_ignored(tmp_path, monkeypatch):
    probes.configure(tmp_path, "use")
    probes.remember("bf16", "k", {"speedup": 1.7})
    assert probes.recall("bf16", "k")["speedup"] == 1.7
    path = probes.cache_file()
    data = json.loads(path.read_text())
    data["machine"]["torch"] = "0.0"  # written by another torch under the same name: not trusted
    path.write_text(json.dumps(data))
    assert probes.recall("bf16", "k") is None
    path.write_text("{half a file")
    assert probes.recall("bf16", "k") is None
    probes.remember("bf16", "k", {"speedup": 1.2})  # overwrites the damaged file
    assert probes.recall("bf16", "k")["speedup"] == 1.2
    probes.configure(tmp_path, "off")
    assert probes.recall("bf16", "k") is None
    with pytest.raises(InputError, match="probe_cache='sometimes'"):
        probes.configure(tmp_path, "sometimes")


def test_unwritable_cache_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    probes.configure(blocker, "use")  # <file>/probes cannot be created
    probes.remember("bf16", "k", {"speedup": 1.0})
    assert "cannot write the probe cache" in caplog.text
    assert probes.recall("bf16", "k") is None


def test_interleaved_rounds_rotate_and_stop_when_the_leader_holds():
    order = []
    timers = {n: (lambda n=n, t=t: order.append(n) or t) for n, t in (("a", 2.0), ("b", 1.0), ("c", 3.0))}
    best = probes.interleaved_min(timers, rounds=3, max_rounds=10)
    assert best == {"a": 2.0, "b": 1.0, "c": 3.0}
    assert order[:6] == ["a", "b", "c", "b", "c", "a"] and len(order) == 9  # 3 rounds: "b" led 3 times


def test_precision_auto_probe_is_interleaved_cached_and_refreshable(tmp_path, monkeypatch):
    from speechlm.models.hifigan.generator import HiFiGANGenerator

    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    probes.configure(tmp_path, "use")
    calls = []
    monkeypatch.setattr(precision, "measure_bf16_speedup", lambda m, ex: calls.append(1) or 1.6)
    example = (torch.randn(1, 8, 16),)

    def gen():
        torch.manual_seed(0)
        return HiFiGANGenerator(8, 16, [2, 2], [4, 4], [3], [[1, 3, 5]]).eval()

    assert precision.apply_precision(gen(), "auto", example) == torch.bfloat16 and calls == [1]
    assert precision.apply_precision(gen(), "auto", example) == torch.bfloat16 and calls == [1]  # from disk
    probes.configure(tmp_path, "refresh")
    assert precision.apply_precision(gen(), "auto", example) == torch.bfloat16 and calls == [1, 1]


def test_bf16_speedup_keeps_the_minimum_of_interleaved_rounds(monkeypatch):
    """A burst of load during the fp32 rounds cannot make bf16 look faster than it is."""
    from speechlm.models.hifigan.generator import HiFiGANGenerator

    torch.manual_seed(0)
    module = HiFiGANGenerator(8, 16, [2, 2], [4, 4], [3], [[1, 3, 5]]).eval()
    now = [0.0]
    cost = {torch.float32: 1.0, torch.bfloat16: 1.25}  # bf16 is slower here when quiet
    busy = iter([5.0, 0.0, 5.0, 5.0, 0.0] + [0.0] * 40)  # fp32 calls: loaded 5x in some rounds

    real_forward = HiFiGANGenerator.forward

    def forward(self, x, g=None):
        dtype = self.conv_pre.bias.dtype
        if x.dtype == dtype:  # not the outer call that casts the input and calls forward again
            now[0] += cost[dtype] * (1 + (next(busy) if dtype == torch.float32 else 0.0))
        return real_forward(self, x, g)

    monkeypatch.setattr(HiFiGANGenerator, "forward", forward)
    speedup = precision.measure_bf16_speedup(module, (torch.randn(1, 8, 16),), clock=lambda: now[0])
    assert speedup == pytest.approx(1.0 / 1.25)


def test_probe_cache_key_reaches_the_pipeline(tmp_path, capfd, monkeypatch):
    from speechlm.cli import main
    from speechlm.config import compose
    from speechlm.pipeline import TTS

    TTS(compose("infer", ["task=tts", "text=hi", "device=cpu", "probe_cache=refresh", f"cache_dir={tmp_path}"]))
    assert probes.mode() == "refresh" and probes.cache_folder() == tmp_path / "probes"
    TTS(compose("infer", ["task=generate", "text=hi", "device=cpu"]))
    assert probes.mode() == "use" and probes.cache_folder() != tmp_path / "probes"  # the env var / home default
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert main(["task=tts", "text=hi", "device=cpu", "probe_cache=sometimes"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "probe_cache='sometimes'" in err[0]
