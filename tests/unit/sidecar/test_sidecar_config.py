"""Configuration: precedence, parsing, every problem reported at once with its path."""

import pytest

from driftcar.sidecar.config import ConfigError, Endpoint, OPTIONS, load_config, parse_duration


def test_defaults_are_safe_loopback():
    cfg = load_config(env={})
    assert cfg.grpc == Endpoint("127.0.0.1", 14317)
    assert cfg.http == Endpoint("127.0.0.1", 14318)
    assert cfg.prometheus == Endpoint("127.0.0.1", 9464)
    assert cfg.window_s == 60.0 and cfg.window == "1m"
    assert cfg.export == "otlp"


def test_precedence_yaml_then_env_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("window: 30s\nmax_models: 7\ntls:\n  cert: null\nprometheus: 'off'\n")
    cfg = load_config(str(path), env={"DRIFTCAR_WINDOW": "2m", "DRIFTCAR_MAX_MODELS": "9"},
                      flags={"window": "5s"})
    assert cfg.window_s == 5.0  # flag beats env beats yaml
    assert cfg.max_models == 9  # env beats yaml
    assert cfg.prometheus is None


def test_all_problems_reported_at_once_with_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("windw: 1m\nmax_models: -3\ntls:\n  certt: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={"DRIFTCAR_GRPC": "nohost", "DRIFTCAR_NOPE": "1"},
                    flags={"window": "soon", "reference": ["missing.profile"]})
    paths = [p for p, _ in info.value.problems]
    text = str(info.value)
    assert f"{path}: windw" in paths
    assert f"{path}: max_models" in paths
    assert f"{path}: tls.certt" in paths
    assert "DRIFTCAR_GRPC" in paths and "DRIFTCAR_NOPE" in paths
    assert "--window" in paths and "--reference" in paths
    assert len(info.value.problems) == 7, text


def test_non_loopback_needs_tls_token_or_explicit_flag(tmp_path):
    with pytest.raises(ConfigError, match="allow-insecure-bind"):
        load_config(env={}, flags={"grpc": "0.0.0.0:14317"})
    assert load_config(env={}, flags={"grpc": "0.0.0.0:14317", "allow_insecure_bind": True}).grpc.host == "0.0.0.0"
    assert load_config(env={"DRIFTCAR_TOKEN": "s3cret"}, flags={"grpc": "0.0.0.0:1"}).grpc.port == 1
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert load_config(env={}, flags={"http": "0.0.0.0:2", "token_file": str(token)}).token_file == str(token)


def test_references_bind_to_models(tmp_path):
    a, b = tmp_path / "a.profile", tmp_path / "b.profile"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    cfg = load_config(env={}, flags={"reference": [str(a), f"churn@3={b}"]})
    assert cfg.reference_for("churn", "3") == str(b)
    assert cfg.reference_for("churn", "4") == str(a)
    assert cfg.reference_for("other", "1") == str(a)


def test_every_option_has_env_and_flag_names():
    envs = {o.env for o in OPTIONS}
    flags = {o.flag for o in OPTIONS}
    assert len(envs) == len(OPTIONS) == len(flags)
    assert "DRIFTCAR_TLS_CLIENT_CA" in envs and "--tls-client-ca" in flags
    assert "--state-dir" in flags and "DRIFTCAR_STATE_DIR" in envs


@pytest.mark.parametrize("bad", ["0s", "-1m", "1y", "abc", True])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_drift_section_is_validated_by_the_stats_engine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("drift:\n  min_samples: 50\n  features:\n    age: {method: psi, threshold: 0.2}\n")
    cfg = load_config(str(path), env={})
    assert cfg.drift.min_samples == 50 and cfg.drift.features["age"].method == "psi"
    path.write_text("drift:\n  bogus: 1\n  features:\n    age: {methd: psi}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    text = str(info.value)
    assert "drift.bogus" in text and "drift.features.age.methd" in text


def test_hook_variables_in_a_shared_environment_are_left_alone_but_typos_refused():
    # A model container and its sidecar often share one environment (compose, one pod spec).
    shared = {"DRIFTCAR_ENDPOINT": "http://127.0.0.1:14317", "DRIFTCAR_PROTOCOL": "grpc",
              "DRIFTCAR_COMPRESSION": "none", "DRIFTCAR_MAX_BUFFER_BYTES": "64MiB", "DRIFTCAR_PROFILE_BINS": "10"}
    assert load_config(env=shared).window_s == 60.0
    with pytest.raises(ConfigError) as info:
        load_config(env={**shared, "DRIFTCAR_WINDWO": "5m"})
    assert [p for p, _ in info.value.problems] == ["DRIFTCAR_WINDWO"]


def test_component_configs_carry_only_their_fields_and_are_frozen():
    import dataclasses

    config = load_config(env={}, flags={"window": "30s", "windows_kept": "7", "local_verdicts": "false",
                                        "performance_thresholds": "accuracy=0.9,rmse=2.5"})
    evaluator = config.evaluator_config()
    assert evaluator.window_s == 30.0 and evaluator.window == "30s" and evaluator.local_verdicts is False
    assert dict(evaluator.performance_thresholds) == {"accuracy": 0.9, "rmse": 2.5}
    assert evaluator.drift is None and config.evaluator_config(drift="given").drift == "given"
    api = config.api_config()
    assert (api.window_s, api.windows_kept) == (30.0, 7)
    for part in (evaluator, api, config.model_config()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            part.window_s = 1.0
    assert {f.name for f in dataclasses.fields(api)} == {"window_s", "windows_kept"}


def test_store_fleet_and_security_configs_carry_only_their_fields(tmp_path):
    import dataclasses

    from driftcar.sidecar.security import TokenAuth

    a, b, token = tmp_path / "a.profile", tmp_path / "b.profile", tmp_path / "token"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    token.write_text("abc\n")
    config = load_config(env={}, flags={"window": "30s", "max_models": "4", "retry_after": "2s", "label_max_rows": "9",
                                        "reference": [str(a), f"churn@3={b}"], "token_file": str(token)})
    store, fleet, security = config.store_config(), config.fleet_config(), config.security_config()
    assert store.max_models == 4 and store.model == config.model_config()
    assert config.store_config(drift="given").model.drift == "given"
    assert (fleet.window_s, fleet.wait_s, fleet.max_models, fleet.retry_after_s, fleet.label_max_rows) == (
        30.0, 30.0, 4, 2.0, 9)  # fleet_wait defaults to one window
    assert load_config(env={}, flags={"fleet_wait": "45s"}).fleet_config().wait_s == 45.0
    for part in (store, fleet):
        assert [part.reference_for(*mv) for mv in (("churn", "3"), ("churn", "4"), ("other", "1"))] == [
            str(b), str(a), str(a)]
        with pytest.raises(TypeError):  # the references are read-only, not a copy to edit
            part.references["other"] = str(b)
    assert config.reference_for("other", "1") == str(a)
    assert (security.token_file, security.tls) == (str(token), config.tls)
    assert TokenAuth.from_config(security).check("Bearer abc")
    for part in (store, fleet, security):
        with pytest.raises(dataclasses.FrozenInstanceError):
            part.max_models = 1
    assert {f.name for f in dataclasses.fields(security)} == {"token_file", "tls"}
    assert {f.name for f in dataclasses.fields(store)} == {"max_models", "references", "model"}
