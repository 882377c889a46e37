"""Static checks of the Dockerfile (images cannot be pulled on CI machines, so it is read, not built)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + (stripped[:-1].rstrip() if stripped.endswith("\\") else stripped)
        if not stripped.endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


@pytest.fixture(scope="module")
def dockerfile():
    return instructions((ROOT / "Dockerfile").read_text())


def final_stage(dockerfile):
    starts = [i for i, (word, _) in enumerate(dockerfile) if word == "FROM"]
    return dockerfile[starts[-1]:]


def sidecar_default_ports() -> dict[str, int]:
    from driftcar.sidecar.config import SidecarConfig

    config = SidecarConfig()
    return {"grpc": config.grpc.port, "http": config.http.port, "prometheus": config.prometheus.port}


def test_parser_joins_continuations():
    parsed = instructions("FROM a AS b\n# note\nRUN x \\\n  && y\nUSER 1\n")
    assert parsed == [("FROM", "a AS b"), ("RUN", "x && y"), ("USER", "1")]


def test_multi_stage_slim_wheel_build(dockerfile):
    froms = [args for word, args in dockerfile if word == "FROM"]
    assert len(froms) >= 2
    assert all("-slim" in f for f in froms)
    assert re.search(r"\bAS build\b", froms[0])
    assert any(word == "RUN" and "pip wheel" in args for word, args in dockerfile)
    final = final_stage(dockerfile)
    assert any(word == "RUN" and "from=build" in args and "--no-index" in args for word, args in final)


def test_runs_as_non_root(dockerfile):
    users = [args for word, args in final_stage(dockerfile) if word == "USER"]
    assert users, "final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000, "numeric uid lets Kubernetes verify runAsNonRoot"


def test_entrypoint_is_the_sidecar(dockerfile):
    entry = [args for word, args in final_stage(dockerfile) if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["driftcar", "sidecar"]


def test_exposed_ports_equal_the_sidecar_defaults(dockerfile):
    exposed = {int(p.split("/")[0]) for word, args in final_stage(dockerfile) if word == "EXPOSE" for p in args.split()}
    assert exposed == set(sidecar_default_ports().values())


def test_healthcheck_probes_healthz_on_the_http_port(dockerfile):
    checks = [args for word, args in final_stage(dockerfile) if word == "HEALTHCHECK"]
    assert checks
    command = checks[-1].split("CMD", 1)[1].strip()
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"], "no curl in slim images"
    assert "/healthz" in argv[2]
    assert f"127.0.0.1:{sidecar_default_ports()['http']}" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # the one-liner is valid Python


def test_config_by_env_and_mounted_yaml(dockerfile):
    env = " ".join(args for word, args in final_stage(dockerfile) if word == "ENV")
    assert "DRIFTCAR_CONFIG=/etc/driftcar/driftcar.yaml" in env
    copies = [shlex.split(args) for word, args in final_stage(dockerfile) if word == "COPY"]
    assert ["deploy/driftcar.yaml", "/etc/driftcar/driftcar.yaml"] in copies


def test_default_config_file_is_accepted_by_the_sidecar():
    import driftcar.sidecar.config as config_mod

    path = ROOT / "deploy" / "driftcar.yaml"
    config = config_mod.load_config(str(path), env={})
    assert config.grpc.port == sidecar_default_ports()["grpc"]
    assert config.grpc.is_loopback and config.http.is_loopback, "the image default binds loopback (pod-safe)"
    assert set(yaml.safe_load(path.read_text())) <= {o.key.split(".")[0] for o in config_mod.OPTIONS}


def test_dockerignore_keeps_the_build_context_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests"):
        assert entry in ignored
    for needed in ("agent", "pyproject.toml", "README.md"):
        assert needed not in ignored


def test_collector_image_builds_the_distribution_as_make_does():
    """collector-config/Dockerfile: the same build script, a non-root runtime, the shipped configs."""
    steps = instructions((ROOT / "collector-config" / "Dockerfile").read_text())
    assert ("RUN", "./build.sh") in steps
    final = final_stage(steps)
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) >= 1000
    assert ("COPY", "*.yaml /etc/otelcol/") in final, "every shipped config goes into the image"
    assert json.loads(next(args for word, args in final if word == "ENTRYPOINT")) == ["otelcol-driftcar"]
