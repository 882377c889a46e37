"""driftcar examples (runnable: ``python -m examples.sklearn_http.server``, ``python -m examples.river_stream.stream``)."""
