"""The shipper worker's part of a call, alone (run by ``callgrind_hook.py worker``).

``python benchmarks/ship_workload.py --calls N --endpoint URL`` captures 500 1-row
``LogisticRegression.predict`` calls without shipping them, ships that 500-row batch once to
warm up (channel, resource, imports), then ships it again for every 500 of ``N`` calls
(``Shipper._ship``: thaw, columns, encoding, request and a real export, on this thread).
Under callgrind the difference between two ``N`` is the worker's instructions per row,
with none of the model's.
"""

from __future__ import annotations

import argparse
import os

from hook_workload import _model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), default="http/protobuf")
    args, _ = parser.parse_known_args()
    import driftcar

    model, inputs = _model("plain")
    monitor = driftcar.instrument(model, name="bench", version="1", endpoint=args.endpoint, protocol=args.protocol,
                                  max_batch_rows=10**9, max_batch_age_s=3600)
    for i in range(500):
        model.predict(inputs[i:i + 1])
    shipper = monitor.state.shipper
    shipper._seal_blocks()  # the open columnar block joins the buffer, as at batch age
    taken = shipper._buffer.take(10**9, 1 << 40)
    assert taken.rows == 500, taken.rows
    for _ in range(1 + args.calls // 500):
        shipper._ship(taken)
    assert shipper.stats["failed_exports"] == 0, shipper.stats
    os._exit(0)


if __name__ == "__main__":
    main()
