"""`connector-host serve`'s /metrics, parsed by Prometheus' own Python client.

A connection is synced from the ServiceNow emulator with the host, then the
console is served over its configuration directory; `prometheus_client`'s
text parser must read every family and the values the database holds.

Run by .ci/run: SERVICENOW_EMULATOR and CONNECTOR_HOST name the binaries.
"""

import os
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

PASSWORD = "exposure"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    work = tmp_path_factory.mktemp("console")
    emulator = subprocess.Popen(
        [os.environ["SERVICENOW_EMULATOR"], "--listen", "127.0.0.1:0", "--devices", "60"],
        stdout=subprocess.PIPE, text=True,
    )
    serve = None
    try:
        url = emulator.stdout.readline().split()[-1]
        config = work / "servicenow.toml"
        config.write_text(
            f'database = "inventory.db"\n[settings]\ninstance = "{url}"\n'
            '[auth]\nmethod = "basic"\nusername = "svc_exposure"\npassword_env = "SN_PASSWORD"\n'
            '[sync]\npartitions = 2\n'
        )
        env = dict(os.environ, SN_PASSWORD=PASSWORD)
        host = os.environ["CONNECTOR_HOST"]
        subprocess.run([host, "sync", "--config", str(config)], env=env, check=True, capture_output=True)
        serve = subprocess.Popen(
            [host, "serve", "--config-dir", str(work), "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        listening = serve.stdout.readline().split()[-1]
        yield listening, url
    finally:
        if serve is not None:
            serve.terminate()
            assert serve.wait(timeout=30) == 0
        emulator.terminate()
        emulator.wait(timeout=10)


def test_metrics_parse_as_prometheus_text(console):
    base, emulator_url = console
    with urllib.request.urlopen(f"{base}/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    connection = "servicenow-cmdb@" + emulator_url.split("//")[1]
    assert set(families) >= {
        "connector_health", "connector_records", "connector_last_sync_duration_seconds",
        "connector_last_sync_end_timestamp_seconds", "connector_last_sync_requests",
        "connector_last_sync_retries", "connector_last_sync_rows_hidden_by_acl",
    }
    health = {s.labels["state"]: s.value for s in families["connector_health"].samples
              if s.labels["connection"] == connection}
    assert health == {"connected": 1.0, "temporary-failure": 0.0, "failed": 0.0}
    records = {s.labels["stream"]: s.value for s in families["connector_records"].samples}
    assert records["devices"] == 60.0
    assert set(records) == {"devices", "network_adapters", "business_applications"}
    (requests,) = families["connector_last_sync_requests"].samples
    assert requests.value > 0
