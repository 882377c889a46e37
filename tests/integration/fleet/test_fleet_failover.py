"""Failover with the `dns` resolver: the real Collector (build/otelcol-driftcar, collector-config/fleet.yaml)
finds its gateways by a name, and the models of a gateway that dies move to the others.

The Collector runs in its own mount namespace with a private /etc/hosts (tests/support/hosts.py):
`gateways.driftcar.test` names 127.0.0.2, .3 and .4, one driftcar gateway on each, all on the same
port, as a headless Service's name does in a cluster. 30 models x 3 replicas send one window per round.

- One gateway is killed mid-stream and its line removed from the hosts file: once the resolver has
  dropped it, its models are judged on the survivors (all replicas merged, one gateway per model), the
  survivors' own models stay where they were, and at most the one window in flight when it died is lost
  per model, every lost record counted by the Collector (otelcol_exporter_send_failed_log_records counts
  whole requests, so records of the same request that did reach a survivor are counted too; their
  retries show there as `late`). Here the name changes only after the Collector gave up on that window,
  as when a pod's endpoint goes unready seconds after it died; a quicker resolver lets the retries
  reach the new owner instead.
- A gateway added to the file takes a share of the models, losing nothing.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.fleet.test_fleet_collector import MODELS, REPLICAS, WINDOW, _held, _send_window
from tests.integration.sidecar.sidecar_helpers import GrpcSender, SidecarProcess, get_json
from tests.support.collector import CONFIG_DIR, Collector
from tests.support.hosts import HostsFile, require_private_hosts, with_hosts
from tests.support.waiting import free_port, wait_until

NAME = "gateways.driftcar.test"
ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
ADDED = "127.0.0.5"
FLEET_WAIT = 2.0
FAILED = "otelcol_exporter_send_failed_log_records"


class HostsCollector(Collector):
    """The Collector seeing ``hosts`` as its /etc/hosts (its own mount namespace, gone when it exits)."""

    def __init__(self, directory, config, hosts: HostsFile, **kwargs):
        super().__init__(directory, config, **kwargs)
        self.hosts = hosts

    def command(self, *extra: str) -> list[str]:
        return with_hosts(self.hosts.path, super().command(*extra))


def _shared_port() -> int:
    """A port free on every gateway address (each gateway binds its own 127.0.0.x)."""
    for _ in range(20):
        port = free_port()
        try:
            for address in ADDRESSES + [ADDED]:
                with socket.socket() as s:
                    s.bind((address, port))
            return port
        except OSError:
            continue
    pytest.fail("no port free on all of 127.0.0.2-5")


def _gateway(tmp_path: Path, address: str, port: int) -> SidecarProcess:
    """A gateway whose OTLP gRPC listens on ``address:port`` (its HTTP API on 127.0.0.1, free ports)."""
    return SidecarProcess(tmp_path, "--role", "gateway", "--window", f"{WINDOW:g}s", "--fleet-wait", f"{FLEET_WAIT:g}s",
                          "--export", "none", "--grpc", f"{address}:{port}",
                          ports={"grpc": port, "http": free_port(), "prometheus": free_port()}).start()


def _config(tmp_path: Path, port: int, gateway_port: int) -> Path:
    """fleet.yaml with the `dns` resolver on NAME (re-resolved every second) and short retries."""
    config = yaml.safe_load((CONFIG_DIR / "fleet.yaml").read_text())
    config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"127.0.0.1:{port}"
    lb = config["exporters"]["load_balancing"]
    lb["resolver"] = {"dns": {"hostname": NAME, "port": str(gateway_port), "interval": "1s", "timeout": "1s"}}
    lb["retry_on_failure"].update(initial_interval="200ms", max_interval="500ms", max_elapsed_time="2s")
    path = tmp_path / "fleet-dns.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _round(sender: GrpcSender, gateways: dict[str, SidecarProcess], complete: bool = True) -> tuple[int, dict]:
    """Send one window of every model; model -> (gateway address, replicas merged) for that window.

    With ``complete`` every model must be judged with all replicas; otherwise whatever was judged
    by the time the window's bound has passed, plus slack for the Collector's retries."""
    start = _send_window(sender)
    seen: dict[str, list[tuple[str, int]]] = {}

    def judged():
        seen.clear()
        for address, gateway in gateways.items():
            for model, replicas in _held(gateway, start).items():
                seen.setdefault(model, []).append((address, replicas))
        return len(seen) == len(MODELS) and all(r == len(REPLICAS) for v in seen.values() for _, r in v)

    bound = start / 1e9 + WINDOW + FLEET_WAIT + 4.0 - time.time()
    if complete:
        wait_until(judged, 30, interval=0.3, what=f"window {start} judged for every model")
    else:
        try:
            wait_until(judged, bound, interval=0.3, what="the window in flight")
        except AssertionError:
            pass  # some of it was lost: the caller counts what is missing
    assert all(len(v) == 1 for v in seen.values()), {m: v for m, v in seen.items() if len(v) > 1}  # one owner each
    return start, {m: v[0] for m, v in seen.items()}


def _backends(collector: Collector, n: int) -> None:
    """Wait until the Collector's ring has ``n`` backends (the resolver re-read the hosts file)."""
    wait_until(lambda: collector.metric("otelcol_loadbalancer_num_backends") == n, 30, interval=0.2,
               what=f"{n} backends resolved ({collector.log()})")


def _judged_drift(gateway: SidecarProcess, model: str, start: int) -> bool:
    """The gateway's drift document for ``model`` covers window ``start``, every replica's rows, every feature."""
    status, doc = get_json(f"{gateway.http}/v1/models/{model}/drift")
    (version,) = doc["versions"]
    window = version["window"] or {}
    return (status == 200 and window.get("start_unix_nano") == start and window.get("rows") == 200 * len(REPLICAS)
            and sorted(version["features"]) == ["x0", "x1", "x2"])


@pytest.fixture
def fleet(tmp_path):
    require_private_hosts(tmp_path)
    port = _shared_port()
    gateways = {}
    try:
        for address in ADDRESSES:
            gateways[address] = _gateway(tmp_path, address, port)
        yield port, gateways
    finally:
        for gateway in gateways.values():
            gateway.kill()


def test_dns_resolver_moves_a_dead_gateways_models_and_gives_models_to_a_new_one(tmp_path, fleet):
    port, gateways = fleet
    hosts = HostsFile(tmp_path / "hosts", NAME, ADDRESSES)
    receiver = free_port()
    with HostsCollector(tmp_path, _config(tmp_path, receiver, port), hosts, name="otelcol-dns") as collector:
        _backends(collector, 3)
        sender = GrpcSender(receiver)
        _, owners = _round(sender, gateways)
        assert {a for a, _ in owners.values()} == set(ADDRESSES), owners  # spread over all three

        # one gateway dies mid-stream: a window is sent while the ring still names it, then it leaves the name
        victim = max(ADDRESSES, key=lambda a: sum(o == a for o, _ in owners.values()))
        moved = {m for m, (a, _) in owners.items() if a == victim}
        gateways[victim].kill()
        survivors = {a: g for a, g in gateways.items() if a != victim}
        failed_before = collector.metric(FAILED, exporter="load_balancing")
        _, in_flight = _round(sender, survivors, complete=False)
        hosts.set([a for a in ADDRESSES if a != victim])
        _backends(collector, 2)

        rounds = [_round(sender, survivors) for _ in range(2)]
        after = [judged for _, judged in rounds]
        for judged in after:
            assert all(judged[m][0] == owners[m][0] for m in set(MODELS) - moved)  # survivors keep their models
            assert all(judged[m][0] in survivors for m in moved)
        for model in moved:  # the drift verdicts go on where the model went, on all replicas' rows
            wait_until(lambda: _judged_drift(survivors[after[-1][model][0]], model, rounds[-1][0]), 10, interval=0.2,
                       what=f"{model}'s fleet drift verdict on its new gateway")

        # at most one window per model lost (the one in flight; the rounds after are complete), all counted
        lost = sum(len(REPLICAS) - in_flight.get(m, (None, 0))[1] for m in moved)
        assert all(in_flight[m][1] == len(REPLICAS) for m in set(MODELS) - moved)
        wait_until(lambda: collector.metric(FAILED, exporter="load_balancing") - failed_before >= lost, 30, interval=0.3,
                   what=f"{lost} lost window records counted ({collector.log()})")
        assert collector.metric(FAILED, exporter="load_balancing") - failed_before <= len(MODELS) * len(REPLICAS)

        # the reverse: a gateway added to the name takes a share of the models
        gateways[ADDED] = _gateway(tmp_path, ADDED, port)
        survivors[ADDED] = gateways[ADDED]
        hosts.set([a for a in ADDRESSES if a != victim] + [ADDED])
        _backends(collector, 3)
        # the resolver records the backend count just before the exporter swaps its ring, so a round
        # sent at once may still go by the old ring: every round is complete (nothing lost), and the
        # new gateway takes its share within a few
        for _ in range(8):  # (3 were not always enough in CI)
            _, judged = _round(sender, survivors)
            taken = {m for m, (a, _) in judged.items() if a == ADDED}
            if taken:
                break
        assert taken, judged
        assert all(judged[m][0] == after[-1][m][0] for m in set(MODELS) - taken)  # only the new one's share moved
