"""Traffic for the HTTP example: predictions, labels posted back later by id, and a drift.

    python -m examples.sklearn_http.client --url http://127.0.0.1:8080 --rate 20 --drift-after 60

Every ``1/rate`` seconds it POSTs ``--batch`` rows to ``/predict``; the true labels of those
rows are POSTed to ``/labels`` ``--label-delay`` seconds later (ground truth arrives late in
real life). After ``--drift-after`` seconds the rows come from the drifted distribution
(``data.DRIFTED`` features move). Stops after ``--duration`` seconds unless ``--forever``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from examples.sklearn_http.data import FEATURES, make_churn

__all__ = ["Traffic", "run_traffic", "main"]


@dataclass
class Traffic:
    """What a run sent (for tests and the final print)."""

    requests: int = 0
    rows: int = 0
    labelled: int = 0
    errors: list[str] = field(default_factory=list)


async def run_traffic(url: str, *, rate: float = 20.0, batch: int = 20, duration: float | None = 30.0,
                      drift_after: float | None = None, label_delay: float = 1.0, seed: int = 1) -> Traffic:
    """Send traffic until ``duration`` seconds passed (None: forever). Bounded: one request in flight."""
    out = Traffic()
    pending: list[asyncio.Task] = []
    start = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post_labels(ids, ys):
            await asyncio.sleep(label_delay)
            async with session.post(f"{url}/labels", json={"ids": ids, "labels": ys}) as resp:
                if resp.status != 200:
                    out.errors.append(f"labels: HTTP {resp.status}")
                else:
                    out.labelled += len(ids)

        i = 0
        while duration is None or time.monotonic() - start < duration:
            drifted = drift_after is not None and time.monotonic() - start >= drift_after
            X, y = make_churn(batch, seed=seed + i, drift=drifted)
            rows = [dict(zip(FEATURES, map(float, r))) for r in X]
            try:
                async with session.post(f"{url}/predict", json={"rows": rows}) as resp:
                    body = await resp.json() if resp.status == 200 else None
                    if body is None:
                        out.errors.append(f"predict: HTTP {resp.status}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                out.errors.append(f"predict: {exc!r}")
                body = None
            if body is not None:
                out.requests += 1
                out.rows += len(rows)
                pending.append(asyncio.create_task(post_labels(body["ids"], [int(v) for v in y])))
                pending = [t for t in pending if not t.done()]
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--batch", type=int, default=20, help="rows per request")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--forever", action="store_true")
    parser.add_argument("--drift-after", type=float, default=None, help="seconds until the data drifts")
    parser.add_argument("--label-delay", type=float, default=1.0)
    args = parser.parse_args(argv)
    result = asyncio.run(run_traffic(args.url, rate=args.rate, batch=args.batch,
                                     duration=None if args.forever else args.duration,
                                     drift_after=args.drift_after, label_delay=args.label_delay))
    print(f"sent {result.requests} requests, {result.rows} rows, {result.labelled} labels; errors: {len(result.errors)}")


if __name__ == "__main__":
    main()
