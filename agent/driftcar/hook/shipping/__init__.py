"""The hook's shipping side: bounded buffer, batches, OTLP export, retries, fork safety.

``Shipper(ShipperConfig(...))`` receives :class:`~driftcar.hook.records.Captured`
items from the capture side through :meth:`Shipper.offer` (never blocks, never
raises) and ships them from a daemon thread as ``driftcar.batch`` OTLP log
records (spec: ``proto/BATCH.md``) over gRPC or HTTP/protobuf.
"""

from driftcar.hook.shipping.config import ShipperConfig, parse_headers
from driftcar.hook.shipping.shipper import Shipper

__all__ = ["Shipper", "ShipperConfig", "parse_headers"]
