#!/usr/bin/env python
"""HTTP API load benchmark: N concurrent clients against a local server.

Starts ``task=serve``'s app on a free loopback port around a random-weight pipeline (``--size tiny``, or
``official``: text2semantic ``dual_ar_2_codebook_medium`` + the official VITS, written once by
``benchmarks/e2e.py``'s helper) or targets ``--url``; then for each client count runs that many clients,
each sending ``--requests`` streaming ``/v1/invoke`` requests back to back. Reports time to first audio
(first PCM bytes after the WAV header) and latency (median and p95), real-time factor, throughput (audio
seconds and, for a local server, generated tokens per wall second) and rejections (429/503).
``--max-batch-size`` sets the server's continuous batching (1 = off).

    .venv/bin/python benchmarks/serve.py                          # tiny model, clients 1,2,4
    .venv/bin/python benchmarks/serve.py --clients 1,4,8 --workers 2 --queue-size 8 --max-batch-size 1
    .venv/bin/python benchmarks/serve.py --size official --quantize int8 --clients 1,2,4,8 --requests 1
    .venv/bin/python benchmarks/serve.py --url http://127.0.0.1:8000 --api-key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
HEADER = 44


class TokenCounter:
    """Counts the columns every ``SemanticGenerator.generate`` in this process yields (local server only)."""

    def __init__(self):
        from speechlm.stages.generate import SemanticGenerator

        self.total, self._lock, original = 0, threading.Lock(), SemanticGenerator.generate

        def counted(gen, *a, **k):
            for seg in original(gen, *a, **k):
                with self._lock:
                    self.total += seg.num_tokens
                yield seg

        SemanticGenerator.generate = counted


def pipeline_config(args, tmp: str):
    """The composed ``task=tts`` config of the benchmarked pipeline (random checkpoints)."""
    from speechlm.config import compose, quote
    from speechlm.testing.tiny import tiny_config

    if args.size == "tiny":
        return tiny_config(tmp)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from e2e import OFFICIAL, official_checkpoints

    paths = official_checkpoints(args.workdir / "official")
    overrides = [f"model/{slot}={name}" for slot, name in OFFICIAL.items()]
    overrides += [f"checkpoints.{slot}={quote(str(p))}" for slot, p in paths.items()]
    overrides += [f"cache_dir={quote(str(Path(tmp) / 'cache'))}", "device=cpu", "decoder=vits"]
    overrides += [f"quantize={args.quantize}"] if args.quantize else []
    return compose("infer", ["task=tts", "text=hello"] + overrides)


def without_stop_rule() -> None:
    """Random weights emit EOS at random steps: every segment then generates ``max_new_tokens`` columns."""
    import speechlm.stages.token_loop as token_loop

    token_loop._is_stop = lambda *a, **k: False


@contextlib.contextmanager
def local_server(args):
    """The real app on 127.0.0.1:<free port> around the benchmarked pipeline; yields the base URL."""
    from speechlm.pipeline import TTS
    from speechlm.serving import ServeSettings, create_app
    from speechlm.serving.background import serve_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        cfg = pipeline_config(args, tmp)
        if args.workers > 1:
            factory = lambda: TTS.from_config(cfg)  # noqa: E731 - one pipeline per worker
        else:
            factory = TTS.from_config(cfg)
        print(f"{args.size} pipeline ready in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        settings = ServeSettings(references_dir=str(Path(tmp) / "voices"), workers=args.workers,
                                 max_batch_size=args.max_batch_size, queue_size=args.queue_size,
                                 max_new_tokens=args.max_new_tokens, max_text_length=10_000, warmup=True,
                                 access_log=False, queue_timeout_s=600)
        with serve_in_thread(create_app(factory, settings), startup_timeout=900) as base:  # warm-up included
            yield base


async def one_request(client: httpx.AsyncClient, seed: int, args) -> dict:
    body = {"text": args.text, "streaming": True, "chunk_length": args.chunk_length, "seed": seed,
            "max_new_tokens": args.max_new_tokens}
    start = time.perf_counter()
    first = None
    size = 0
    async with client.stream("POST", "/v1/invoke", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"status": r.status_code, "error": r.text[:300]}
        async for piece in r.aiter_raw():
            size += len(piece)
            if first is None and size > HEADER:
                first = time.perf_counter() - start
    latency = time.perf_counter() - start
    audio = max(0, size - HEADER) / 2 / 44100
    return {"status": 200, "ttfa": first or latency, "latency": latency, "audio": audio}


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    s = sorted(values)
    return s[max(0, -(-95 * len(s) // 100) - 1)] if s else float("nan")


async def run_level(base: str, clients: int, args, counter: TokenCounter | None) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base, timeout=600, headers=headers, limits=limits) as client:
        async def worker(c: int) -> list[dict]:
            return [await one_request(client, 1000 * c + i, args) for i in range(args.requests)]

        tokens0 = counter.total if counter else 0
        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - start
        tokens = (counter.total - tokens0) if counter else float("nan")
    ok = [r for r in results if r["status"] == 200]
    audio = sum(r["audio"] for r in ok)
    med = lambda key: statistics.median(r[key] for r in ok) if ok else float("nan")  # noqa: E731
    errors = sorted({r.get("error", "") for r in results if r["status"] != 200})[:3]
    return {"clients": clients, "requests": len(results), "ok": len(ok), "rejected": len(results) - len(ok), "errors": errors,
            "ttfa_median_s": med("ttfa"), "ttfa_p95_s": p95([r["ttfa"] for r in ok]),
            "latency_median_s": med("latency"), "latency_p95_s": p95([r["latency"] for r in ok]),
            "rtf_median": statistics.median(r["latency"] / r["audio"] for r in ok if r["audio"] > 0) if ok else None,
            "tokens": tokens, "tokens_per_s": tokens / wall, "audio_s_per_s": audio / wall,
            "requests_per_s": len(ok) / wall, "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="benchmark a running server instead of starting the tiny one")
    p.add_argument("--api-key")
    p.add_argument("--clients", default="1,2,4", help="comma-separated concurrent client counts")
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-batch-size", type=int, default=4, help="server continuous batching (1 = off)")
    p.add_argument("--size", choices=["tiny", "official"], default="tiny")
    p.add_argument("--quantize", choices=["int8", "int4"], default=None, help="text2semantic (official size)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/speechlm-e2e"), help="official random checkpoints")
    p.add_argument("--stop-rule", action="store_true",
                   help="keep the EOS stop rule (default: off, each segment generates --max-new-tokens columns)")
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64, help="per segment (random weights rarely stop early)")
    p.add_argument("--chunk-length", type=int, default=100, help="the server refuses less than min_chunk_length (100)")
    p.add_argument("--text", default=TEXT)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    counter = None
    if not args.url:
        counter = TokenCounter()
        if not args.stop_rule:
            without_stop_rule()
    with (contextlib.nullcontext(args.url) if args.url else local_server(args)) as base:
        rows = []
        for n in levels:
            rows.append(asyncio.run(run_level(base, n, args, counter)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    single = rows[0]["tokens_per_s"] if rows and rows[0]["clients"] == 1 and rows[0]["ok"] else float("nan")
    for r in rows:
        if not r["ok"]:
            print(f"clients={r['clients']}: every request refused: {r.get('errors')}", file=sys.stderr)
    print("| clients | requests | ok | rejected | tokens/s (all) | × 1 client | TTFA p50 (s) | TTFA p95 (s) "
          "| latency p50 (s) | latency p95 (s) | RTF p50 | audio s / s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['ok']} | {r['rejected']} | {r['tokens_per_s']:.1f} "
              f"| {r['tokens_per_s'] / single:.2f} | {r['ttfa_median_s']:.2f} | {r['ttfa_p95_s']:.2f} "
              f"| {r['latency_median_s']:.2f} | {r['latency_p95_s']:.2f} | {r['rtf_median'] or float('nan'):.2f} "
              f"| {r['audio_s_per_s']:.2f} |")
    if not args.url:  # server, models, caches and clients all live in this process
        import resource

        print(f"peak RSS of the local server process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
