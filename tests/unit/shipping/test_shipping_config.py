"""ShipperConfig: defaults, environment, validation that reports every problem at once."""

import pytest

from driftcar.hook.shipping import ShipperConfig, parse_headers


def test_defaults_are_the_documented_ones():
    cfg = ShipperConfig.from_env("churn", "3", env={})
    assert (cfg.endpoint, cfg.protocol, cfg.compression) == ("http://127.0.0.1:14318", "http/protobuf", "none")
    assert cfg.logs_url == "http://127.0.0.1:14318/v1/logs"
    assert (cfg.max_buffer_bytes, cfg.max_batch_rows, cfg.max_batch_age_s) == (64 << 20, 10_000, 1.0)
    assert (cfg.max_request_bytes, cfg.timeout_s, cfg.exit_timeout_s) == (3 << 20, 10.0, 1.0)
    assert (cfg.retry_initial_backoff_s, cfg.retry_max_backoff_s) == (1.0, 5.0)
    assert ShipperConfig("churn") == ShipperConfig.from_env("churn", env={})


def test_an_endpoint_given_without_a_protocol_stays_grpc():
    for cfg in (ShipperConfig.from_env("m", env={"DRIFTCAR_ENDPOINT": "http://127.0.0.1:14317"}),
                ShipperConfig("m", endpoint="http://127.0.0.1:14317"),
                ShipperConfig.from_env("m", env={}, endpoint="sidecar:14317")):
        assert cfg.protocol == "grpc", cfg
    cfg = ShipperConfig.from_env("m", env={"DRIFTCAR_PROTOCOL": "grpc"})
    assert (cfg.endpoint, cfg.grpc_target) == ("http://127.0.0.1:14317", ("127.0.0.1:14317", False))
    cfg = ShipperConfig.from_env("m", env={"DRIFTCAR_PROTOCOL": "http/protobuf"}, endpoint="http://h:9")
    assert cfg.logs_url == "http://h:9/v1/logs"


def test_environment_is_read_and_overrides_win():
    env = {
        "DRIFTCAR_ENDPOINT": "https://collector.example:4318",
        "DRIFTCAR_PROTOCOL": "HTTP/protobuf",
        "DRIFTCAR_HEADERS": "Authorization=Bearer%20t0k,x-tenant=a",
        "DRIFTCAR_TIMEOUT": "2.5",
        "DRIFTCAR_MAX_BUFFER_BYTES": "1MiB",
        "DRIFTCAR_MAX_EXPORT_BYTES": "1048576",
        "DRIFTCAR_MAX_REQUEST_BYTES": "32MiB",  # the sidecar's variable: the hook must ignore it
        "DRIFTCAR_MAX_BATCH_ROWS": "500",
        "DRIFTCAR_MAX_BATCH_AGE": "0.25",
        "DRIFTCAR_COMPRESSION": "none",
    }
    cfg = ShipperConfig.from_env("m", env=env, max_batch_rows=42, timeout_s=None)
    assert cfg.protocol == "http/protobuf" and cfg.logs_url == "https://collector.example:4318/v1/logs"
    assert cfg.headers == {"authorization": "Bearer t0k", "x-tenant": "a"}
    assert (cfg.timeout_s, cfg.max_buffer_bytes, cfg.max_batch_rows, cfg.max_batch_age_s) == (2.5, 1 << 20, 42, 0.25)
    assert cfg.compression == "none" and cfg.max_request_bytes == 1 << 20


def test_http_protocol_defaults_to_the_http_port_and_keeps_an_explicit_path():
    assert ShipperConfig.from_env("m", env={}, protocol="http/protobuf").logs_url == "http://127.0.0.1:14318/v1/logs"
    cfg = ShipperConfig("m", endpoint="http://h:9/v1/logs", protocol="http/protobuf")
    assert cfg.logs_url == "http://h:9/v1/logs"
    assert ShipperConfig("m", endpoint="https://h").grpc_target == ("h:443", True)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as err:
        ShipperConfig("", protocol="udp", compression="zstd", timeout_s=0, max_buffer_bytes=-1,
                      endpoint="ftp://x", max_request_bytes=10)
    text = str(err.value)
    for fragment in ("model_name", "protocol", "compression", "timeout_s", "max_buffer_bytes", "endpoint",
                     "max_request_bytes"):
        assert fragment in text


def test_bad_environment_names_the_variable():
    with pytest.raises(ValueError, match="DRIFTCAR_TIMEOUT='soon'"):
        ShipperConfig.from_env("m", env={"DRIFTCAR_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="DRIFTCAR_HEADERS"):
        ShipperConfig.from_env("m", env={"DRIFTCAR_HEADERS": "novalue"})
    with pytest.raises(ValueError, match="DRIFTCAR_MAX_BUFFER_BYTES='lots'"):
        ShipperConfig.from_env("m", env={"DRIFTCAR_MAX_BUFFER_BYTES": "lots"})
    with pytest.raises(ValueError, match="unknown ShipperConfig options"):
        ShipperConfig.from_env("m", env={}, max_rows=1)


def test_parse_headers_tolerates_blanks():
    assert parse_headers(" a=1 ,, B = x%3Dy ") == {"a": "1", "b": "x=y"}


def test_the_sidecar_token_becomes_a_bearer_header_and_never_shows_in_repr(tmp_path):
    cfg = ShipperConfig.from_env("m", env={"DRIFTCAR_TOKEN": "s3cret"})
    assert cfg.headers == {"authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(cfg)
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert ShipperConfig.from_env("m", env={"DRIFTCAR_TOKEN_FILE": str(token_file)}).headers == {
        "authorization": "Bearer from-file"}
    explicit = ShipperConfig.from_env("m", env={"DRIFTCAR_TOKEN": "s3cret", "DRIFTCAR_HEADERS": "Authorization=Basic%20x"})
    assert explicit.headers == {"authorization": "Basic x"}  # an explicit header wins
    with pytest.raises(ValueError, match="DRIFTCAR_TOKEN_FILE"):
        ShipperConfig.from_env("m", env={"DRIFTCAR_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize("endpoint, expected", [
    ("http://127.0.0.1:14317", "none"), ("localhost:4317", "none"), ("http://[::1]:4317", "none"),
    ("https://collector.example:4317", "gzip"), ("http://10.0.0.7:4318", "gzip"),
])
def test_compression_defaults_to_none_on_loopback_and_gzip_elsewhere(endpoint, expected):
    assert ShipperConfig("m", endpoint=endpoint).compression == expected
    assert ShipperConfig("m", endpoint=endpoint, compression="gzip").compression == "gzip"  # explicit wins
    env = {"DRIFTCAR_COMPRESSION": "gzip", "DRIFTCAR_ENDPOINT": endpoint}
    assert ShipperConfig.from_env("m", env=env).compression == "gzip"
