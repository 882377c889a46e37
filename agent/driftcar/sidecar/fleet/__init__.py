"""Fleet drift: pods forward closed windows, a gateway merges them per model and judges once.

- :mod:`.record` turns a pod's closed window into a ``driftcar.window`` record;
- :mod:`.forwarder` ships them over OTLP (bounded queue, OTLP retries, drops counted);
- :mod:`.merge` adds the replicas' windows (pure, no server);
- :mod:`.gateway` holds open fleet windows, closes them at the straggler bound and judges.
"""

from driftcar.sidecar.fleet.golden import GoldenWindow

__all__ = ["GoldenWindow"]
