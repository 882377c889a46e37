"""Instructions per 1,000-row request (20 numeric + 5 str columns) of the gRPC front's hand-over, on each
side of the link, under valgrind's callgrind: a figure that does not move when the machine is busy.

``python benchmarks/callgrind_handover.py [--requests 40]`` measures four parts, each run with N and 2N
requests (the same 20 over and over) in two processes and differenced (imports and set-up cancel out):

- ``front``: :func:`driftcar.sidecar.handover.encode` of a decoded request; ``front-pickle``: a plain
  ``pickle.dumps`` of it (what the front did before);
- ``sidecar``: the frames read by :class:`driftcar.sidecar.front_link.Frames` (fed in 208 KiB reads,
  a Unix socket's default buffer) and :func:`~driftcar.sidecar.handover.decode`; ``sidecar-pickle``: an
  ``asyncio.StreamReader`` fed the same reads, ``readexactly`` per frame and ``pickle.loads`` (before).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("front", "front-pickle", "sidecar", "sidecar-pickle")
READ = 208 * 1024


def _decoded() -> list:
    """20 distinct decoded requests (set-up: the same whatever the number of requests timed)."""
    sys.path.insert(0, str(HERE))
    import bench_sidecar as bs
    from driftcar.sidecar.ingest import decode_request
    from driftcar.wire import DEFAULT_LIMITS

    return [decode_request(bs._request(bs._columns(bs.ROWS, seed=10 + i), "bench"), DEFAULT_LIMITS)
            for i in range(20)]


def _stream(payloads: list) -> list[bytes]:
    from driftcar.sidecar.front import HEADER

    data = b"".join(HEADER.pack(len(p), i, 2) + bytes(p) for i, p in enumerate(payloads))
    return [data[i: i + READ] for i in range(0, len(data), READ)]


def _workload(part: str, n: int) -> None:
    """``n`` requests (a multiple of 20): the 20 distinct ones over and over."""
    import asyncio
    import pickle

    from driftcar.sidecar import handover
    from driftcar.sidecar.front import HEADER

    decoded = _decoded()
    rounds = n // len(decoded)
    if part == "front":
        for d in decoded * rounds:
            handover.encode(d)
    elif part == "front-pickle":
        for d in decoded * rounds:
            pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)
    elif part == "sidecar":
        reads = _stream([handover.encode(d) for d in decoded])
        asyncio.run(_frames(reads * rounds, lambda link, rid, kind, payload: handover.decode(payload)))
    else:
        reads = _stream([pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL) for d in decoded])

        async def stream() -> None:
            reader = asyncio.StreamReader(limit=2**20)
            for chunk in reads * rounds:
                reader.feed_data(chunk)
                while len(reader._buffer) >= HEADER.size:  # every whole frame in what was read
                    length, _, _ = HEADER.unpack(bytes(reader._buffer[:HEADER.size]))
                    if len(reader._buffer) < HEADER.size + length:
                        break
                    await reader.readexactly(HEADER.size)
                    pickle.loads(await reader.readexactly(length))

        asyncio.run(stream())


async def _frames(reads: list, on_frame) -> None:
    from driftcar.sidecar.front_link import Frames

    frames = Frames(on_frame)
    for chunk in reads:
        at = 0
        while at < len(chunk):
            buffer = frames.get_buffer(-1)
            n = min(len(buffer), len(chunk) - at)
            buffer[:n] = chunk[at: at + n]
            frames.buffer_updated(n)
            at += n


def _instructions(part: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(HERE.parent / "agent"))
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                        "--run", part, str(n)], check=True, env=env, capture_output=True)
        with open(out) as fh:
            return int(re.search(r"^summary:\s+(\d+)", fh.read(), re.M).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--run", nargs=2)
    args = parser.parse_args()
    if args.run:
        sys.path.insert(0, str(HERE.parent))
        _workload(args.run[0], int(args.run[1]))
        return
    n = max(20, args.requests // 20 * 20)
    print("| part | instructions per request |", "|---|---:|", sep="\n")
    for part in PARTS:
        print(f"| {part} | {(_instructions(part, 2 * n) - _instructions(part, n)) / n:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
