#!/usr/bin/env python
"""HTTP API load benchmark: N concurrent clients against a local server.

Starts ``task=serve``'s app on a free loopback port around the tiny random pipeline (or targets
``--url``), then for each client count runs that many clients, each sending ``--requests`` streaming
``/v1/invoke`` requests back to back. Reports per request the time to first audio (first PCM bytes
after the WAV header), latency and real-time factor (latency / audio seconds), and overall
throughput (audio seconds produced per wall second, requests per second) and rejections (429/503).

    .venv/bin/python benchmarks/serve.py                          # tiny model, clients 1,2,4
    .venv/bin/python benchmarks/serve.py --clients 1,4,8 --workers 2 --queue-size 8
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
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
HEADER = 44


@contextlib.contextmanager
def local_server(args):
    """The real app on 127.0.0.1:<free port> around the tiny pipeline; yields the base URL."""
    from speechlm.pipeline import TTS
    from speechlm.serving import ServeSettings, create_app
    from speechlm.serving.background import serve_in_thread
    from speechlm.testing.tiny import build_tiny_tts, tiny_config

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        if args.workers > 1:
            cfg = tiny_config(tmp)
            factory = lambda: TTS.from_config(cfg)  # noqa: E731 - one pipeline per worker
        else:
            factory = build_tiny_tts(tmp)
        print(f"tiny pipeline ready in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        settings = ServeSettings(references_dir=str(Path(tmp) / "voices"), workers=args.workers,
                                 queue_size=args.queue_size, max_new_tokens=args.max_new_tokens,
                                 max_text_length=10_000, warmup=True, access_log=False, queue_timeout_s=600)
        with serve_in_thread(create_app(factory, settings)) as base:
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
            return {"status": r.status_code}
        async for piece in r.aiter_raw():
            size += len(piece)
            if first is None and size > HEADER:
                first = time.perf_counter() - start
    latency = time.perf_counter() - start
    audio = max(0, size - HEADER) / 2 / 44100
    return {"status": 200, "ttfa": first or latency, "latency": latency, "audio": audio}


async def run_level(base: str, clients: int, args) -> dict:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base, timeout=600, headers=headers, limits=limits) as client:
        async def worker(c: int) -> list[dict]:
            return [await one_request(client, 1000 * c + i, args) for i in range(args.requests)]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    ok = [r for r in results if r["status"] == 200]
    audio = sum(r["audio"] for r in ok)
    med = lambda key: statistics.median(r[key] for r in ok) if ok else float("nan")  # noqa: E731
    p90 = lambda key: sorted(r[key] for r in ok)[int(0.9 * (len(ok) - 1))] if ok else float("nan")  # noqa: E731
    return {"clients": clients, "requests": len(results), "ok": len(ok), "rejected": len(results) - len(ok),
            "ttfa_median_s": med("ttfa"), "ttfa_p90_s": p90("ttfa"), "latency_median_s": med("latency"),
            "rtf_median": statistics.median(r["latency"] / r["audio"] for r in ok if r["audio"] > 0) if ok else None,
            "audio_s_per_s": audio / wall, "requests_per_s": len(ok) / wall, "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="benchmark a running server instead of starting the tiny one")
    p.add_argument("--api-key")
    p.add_argument("--clients", default="1,2,4", help="comma-separated concurrent client counts")
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--queue-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64, help="per segment (random weights rarely stop early)")
    p.add_argument("--chunk-length", type=int, default=40)
    p.add_argument("--text", default=TEXT)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    with (contextlib.nullcontext(args.url) if args.url else local_server(args)) as base:
        rows = [asyncio.run(run_level(base, n, args)) for n in levels]
    print("| clients | requests | ok | rejected | TTFA median (s) | TTFA p90 (s) | latency median (s) "
          "| RTF median | audio s / s | req / s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['ok']} | {r['rejected']} | {r['ttfa_median_s']:.3f} "
              f"| {r['ttfa_p90_s']:.3f} | {r['latency_median_s']:.3f} | {r['rtf_median']:.3f} "
              f"| {r['audio_s_per_s']:.2f} | {r['requests_per_s']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
