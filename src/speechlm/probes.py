"""Load-time measurements that survive a busy machine, and their decisions cached on disk.

Three choices are made by timing on the running machine: the int8 matrix kernel per weight shape and the
float32 weight layout (:mod:`speechlm.models.text2semantic.kernels`), and ``precision=auto`` for the
vocoders (:mod:`speechlm.models.precision`). On a shared machine another process can slow any single
measurement several-fold, so:

* :func:`interleaved_min` times the candidates in interleaved rounds (A B, B A, A B, ...: a burst of load
  hits them alike) and keeps each one's minimum: load only ever adds time, so the minimum is the
  measurement closest to the quiet machine. Rounds continue while the leader keeps changing.
* :func:`recall` / :func:`remember` keep each decision in ``<cache_dir>/probes/<machine>.json``, one file per
  (CPU model and flags, torch version); the entry key names the shape, dtype and thread count. The next
  load reuses a decision instead of measuring again under whatever load it meets. Each decision records the
  load average it was measured under; a later load on a clearly quieter machine measures again and keeps
  that, so the cache converges to the quietest measurement.

``probe_cache`` (config key, every task): ``use`` (default: reuse, measure what is missing), ``refresh``
(measure everything again and overwrite) or ``off`` (measure, never read or write the disk). The folder is
``cache_dir`` when the config sets one, else ``$SPEECHLM_PROBE_CACHE``, else ``~/.cache/speechlm/probes``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import torch

from speechlm.errors import InputError

log = logging.getLogger(__name__)

MODES = ("use", "refresh", "off")
ENV_DIR = "SPEECHLM_PROBE_CACHE"
VERSION = 1  # of the file layout and of the measurement method: a change invalidates old decisions

_state: dict = {"root": None, "mode": "use"}
_lock = threading.Lock()
_warned: set[str] = set()


def configure(cache_dir: str | os.PathLike | None = None, mode: str = "use") -> None:
    """Where decisions are kept (``<cache_dir>/probes``; None: the env var or the home cache) and ``mode``."""
    if mode not in MODES:
        raise InputError(f"probe_cache={mode!r} is not one of {', '.join(MODES)}",
                         "use probe_cache=use (default), refresh (measure again) or off", field="probe_cache")
    _state["root"] = Path(cache_dir).expanduser() / "probes" if cache_dir else None
    _state["mode"] = mode


def mode() -> str:
    return _state["mode"]


def cache_folder() -> Path:
    if _state["root"] is not None:
        return _state["root"]
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path("~/.cache/speechlm/probes").expanduser()


@lru_cache(maxsize=1)
def machine() -> dict:
    """What a measurement depends on besides its shape: CPU model and flags, torch version."""
    model, flags = None, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Hardware") and model is None:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:  # not Linux: the platform strings are all there is
        pass
    model = model or platform.processor() or platform.machine()
    return {"cpu": model, "flags": hashlib.sha256(flags.encode()).hexdigest()[:16], "torch": torch.__version__,
            "version": VERSION}


def cache_file() -> Path:
    ident = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:16]
    return cache_folder() / f"{ident}.json"


def device_name(device: torch.device) -> str:
    """The device part of a decision's key (a GPU's name; the CPU is in the file's machine key)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


QUIETER_BY = 0.5  # load average per CPU: a machine this much quieter than at measuring time measures again


def current_load() -> float:
    """The 1-minute load average per CPU (0.0 where the OS does not say)."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except (OSError, AttributeError):
        return 0.0


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:  # a damaged file costs one measurement, never the load
        log.warning("probe cache %s unreadable (%s); measuring again", path, e)
        return {}
    if not isinstance(data, dict) or data.get("machine") != machine() or not isinstance(data.get("decisions"), dict):
        return {}
    return data


def recall(kind: str, key: str) -> dict | None:
    """The cached decision ``kind|key`` (a dict), or None (missing, or ``probe_cache`` is refresh/off)."""
    if _state["mode"] != "use":
        return None
    with _lock:
        entry = _read(cache_file()).get("decisions", {}).get(f"{kind}|{key}")
    if not isinstance(entry, dict):
        return None
    measured_under = entry.get("load")
    if isinstance(measured_under, (int, float)) and current_load() + QUIETER_BY < measured_under:
        log.info("probe %s|%s was measured at load %.2f per CPU, now %.2f: measuring again", kind, key,
                 measured_under, current_load())
        return None
    return entry


def remember(kind: str, key: str, record: Mapping) -> None:
    """Store decision ``kind|key`` (merged into the file, written atomically); a disk fault only warns."""
    if _state["mode"] == "off":
        return
    from speechlm.utils.io import atomic_path

    path = cache_file()
    with _lock:
        data = _read(path) or {"machine": machine(), "decisions": {}}
        data["decisions"][f"{kind}|{key}"] = {**record, "load": round(current_load(), 3),
                                              "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        except Exception as e:  # noqa: BLE001 - read-only or full disk: the decision still holds for this process
            if str(path) not in _warned:
                _warned.add(str(path))
                log.warning("cannot write the probe cache %s (%s); decisions are not kept", path, e)


def interleaved_min(timers: Mapping[str, Callable[[], float]], rounds: int = 3, max_rounds: int = 8) -> dict:
    """Each candidate's minimum over interleaved rounds of ``timer() -> seconds``.

    Every round runs each timer once, in an order rotated per round (no candidate always goes first).
    After ``rounds`` rounds it stops once the leader has held for two rounds, at most ``max_rounds``.

    Returns:
        ``{name: seconds}`` (the minimum of each).
    """
    names = list(timers)
    best = {n: math.inf for n in names}
    leader, held = None, 0
    for r in range(max_rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            best[n] = min(best[n], timers[n]())
        now = min(best, key=best.get)
        held = held + 1 if now == leader else 0
        leader = now
        if r + 1 >= rounds and held >= 2:
            break
    return best
