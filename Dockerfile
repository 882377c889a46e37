# driftcar sidecar image.
#
#   docker build -t driftcar:0.1.0 .
#   docker run --rm -p 14317:14317 -p 14318:14318 -p 9464:9464 \
#     -e DRIFTCAR_GRPC=0.0.0.0:14317 -e DRIFTCAR_HTTP=0.0.0.0:14318 -e DRIFTCAR_PROMETHEUS=0.0.0.0:9464 \
#     -e DRIFTCAR_ALLOW_INSECURE_BIND=true driftcar:0.1.0
#
# Stage 1 builds driftcar's wheel (and collects wheels for its dependencies); stage 2 installs
# them into a clean slim image that runs as an unprivileged user, with no compiler and no pip cache.
#
# Configuration: every option is a key in the YAML file named by DRIFTCAR_CONFIG (default
# /etc/driftcar/driftcar.yaml; mount your own over it), a DRIFTCAR_* variable (DRIFTCAR_WINDOW=5m)
# or a flag after the image name (--window 5m); standard OTEL_* variables set where the sidecar's
# output goes (OTEL_EXPORTER_OTLP_ENDPOINT). Unknown DRIFTCAR_* variables are refused at start-up.
#
# Binding: the defaults listen on 127.0.0.1, which is right inside a Kubernetes pod (containers of
# a pod share one network namespace, so the model and the collector reach the sidecar on loopback).
# Anywhere else (docker run, compose) the receivers must listen on 0.0.0.0, which the sidecar refuses
# without TLS or a bearer token unless DRIFTCAR_ALLOW_INSECURE_BIND=true says so explicitly.
#
# Ports (the sidecar's defaults): 14317 OTLP/gRPC, 14318 OTLP/HTTP + JSON API + /healthz /readyz,
# 9464 Prometheus /metrics.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY agent ./agent
RUN pip wheel --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="driftcar" \
      org.opencontainers.image.description="driftcar sidecar: drift, quality and golden signals for ML models as OpenTelemetry metrics and logs" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DRIFTCAR_CONFIG=/etc/driftcar/driftcar.yaml
RUN groupadd --system --gid 10001 driftcar \
 && useradd --system --uid 10001 --gid driftcar --home-dir /var/lib/driftcar --create-home --shell /usr/sbin/nologin driftcar
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels driftcar
COPY deploy/driftcar.yaml /etc/driftcar/driftcar.yaml
WORKDIR /var/lib/driftcar
USER 10001:10001
EXPOSE 14317 14318 9464
# /healthz on the HTTP port (python: slim images have no curl). Port from DRIFTCAR_HTTP when set.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('DRIFTCAR_HTTP', '127.0.0.1:14318').rsplit(':', 1)[1]; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=2)"]
ENTRYPOINT ["driftcar", "sidecar"]
