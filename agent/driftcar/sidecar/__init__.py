"""The driftcar sidecar: receive ``driftcar.batch`` records, keep per-model state,
evaluate drift and quality at each window close, export OTel metrics and logs.

Importing this package is light; the service lives in :mod:`driftcar.sidecar.service`
(``SidecarService``, ``run_in_thread``) and its configuration in
:mod:`driftcar.sidecar.config` (``SidecarConfig``, ``load_config``).
"""
