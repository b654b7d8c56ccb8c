"""Real ServiceNow clients, unchanged, against the emulator over HTTPS.

pysnc (ServiceNow's own SDK) and pysnow read the emulator's tables with
encoded queries, paging, get-by-sys_id, field selection, display values and
the OAuth password grant. Every answer is compared with the emulator's data
as it dumps it straight from its rows (`--dump-data`), not through HTTP.

Run by .ci/run: SERVICENOW_EMULATOR names the emulator binary.
"""

import json
import os
import subprocess
from urllib.parse import urlparse

import pysnc
import pysnow
import pytest
from pysnc.auth import ServiceNowPasswordGrantFlow
from pysnc.exceptions import AuthenticationException

USER, PASSWORD = "svc_test", "s3cret! with spaces"
CLIENT_ID, CLIENT_SECRET = "pyclient", "pysecret"


class Emulator:
    def __init__(self, url, ca, data):
        self.url = url
        self.ca = ca
        self.data = data

    def rows(self, table):
        return sorted(self.data[table], key=lambda r: r["sys_id"])

    def devices(self, predicate=lambda r: True):
        return [r for r in self.rows("cmdb_ci_computer") if predicate(r)]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    work = tmp_path_factory.mktemp("emulator")
    ca, dump = work / "ca.pem", work / "data.json"
    proc = subprocess.Popen(
        [
            os.environ["SERVICENOW_EMULATOR"], "--listen", "127.0.0.1:0", "--devices", "240",
            "--seed", "11", "--tls", "--ca-out", str(ca), "--user", USER, "--password", PASSWORD,
            "--oauth-client-id", CLIENT_ID, "--oauth-client-secret", CLIENT_SECRET,
            "--dump-data", str(dump),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on https://127.0.0.1:"), line
        os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
        with open(dump, encoding="utf-8") as f:
            yield Emulator(line.split()[-1], str(ca), json.load(f))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pysnc_client(emulator, auth=(USER, PASSWORD)):
    return pysnc.ServiceNowClient(emulator.url, auth, verify=emulator.ca)


def values(gr):
    """The field values of the current pysnc record, as the server sent them."""
    return gr.serialize()


def read_all(gr):
    gr.query()
    return sorted((values(r) for r in gr), key=lambda r: r["sys_id"])


def test_pysnc_pages_through_a_whole_table(emulator):
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_computer", batch_size=37)
    assert read_all(gr) == emulator.devices()


def test_pysnc_pages_through_adapters_and_applications(emulator):
    client = pysnc_client(emulator)
    for table in ("cmdb_ci_network_adapter", "cmdb_ci_business_app"):
        assert read_all(client.GlideRecord(table, batch_size=100)) == emulator.rows(table)


@pytest.mark.parametrize(
    "query, predicate",
    [
        ("os=Linux Red Hat^virtual=true", lambda r: r["os"] == "Linux Red Hat" and r["virtual"] == "true"),
        ("osINAIX,macOS^ORvirtual=true", lambda r: r["os"] in ("AIX", "macOS") or r["virtual"] == "true"),
        ("nameSTARTSWITHpc^os_service_packISNOTEMPTY", lambda r: r["name"].startswith("pc") and r["os_service_pack"] != ""),
        ("nameLIKEcafé^NQused_for=Staging", lambda r: "café" in r["name"].lower() or r["used_for"] == "Staging"),
        ("os!=AIX^cpu_typeENDSWITHM2^nameNOT LIKE00", lambda r: r["os"] != "AIX" and r["cpu_type"].endswith("M2") and "00" not in r["name"]),
        ("sys_updated_on>=2025-06-01 00:00:00^sys_updated_on<2025-07-01 00:00:00",
         lambda r: "2025-06-01 00:00:00" <= r["sys_updated_on"] < "2025-07-01 00:00:00"),
        ("u_criticalityISEMPTY^no_such_column=1", lambda r: r["u_criticality"] == ""),
    ],
)
def test_pysnc_encoded_queries(emulator, query, predicate):
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_computer", batch_size=50)
    gr.add_encoded_query(query)
    assert read_all(gr) == emulator.devices(predicate)


def test_pysnc_order_by_descending(emulator):
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_business_app", batch_size=2)
    gr.order_by_desc("name")
    gr.query()
    names = [r.get_value("name") for r in gr]
    expected = [r["name"] for r in sorted(emulator.rows("cmdb_ci_business_app"), key=lambda r: (r["name"], r["sys_id"]))]
    assert names == list(reversed(sorted(expected)))


def test_pysnc_get_by_sys_id(emulator):
    device = emulator.devices()[17]
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_computer")
    assert gr.get(device["sys_id"])
    assert values(gr) == device
    assert not pysnc_client(emulator).GlideRecord("cmdb_ci_computer").get("0" * 32)


def test_pysnc_field_selection(emulator):
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_computer", batch_size=100)
    gr.fields = ["name", "os", "no_such_field"]
    gr.query()
    records = [values(r) for r in gr]
    assert {tuple(sorted(r)) for r in records} == {("name", "os", "sys_id")}
    assert sorted(records, key=lambda r: r["sys_id"]) == [
        {"sys_id": d["sys_id"], "name": d["name"], "os": d["os"]} for d in emulator.devices()
    ]


def test_pysnc_display_values(emulator):
    apps = {a["sys_id"]: a["name"] for a in emulator.rows("cmdb_ci_business_app")}
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_computer", batch_size=100)
    gr.add_encoded_query("u_primary_business_applicationISNOTEMPTY^sys_class_name=cmdb_ci_linux_server")
    gr.query()
    seen = 0
    for r in gr:
        app = r.get_value("u_primary_business_application")
        assert r.get_display_value("u_primary_business_application") == apps[app]
        assert r.get_display_value("sys_class_name") == "Linux Server"
        assert r.get_display_value("install_status") == "Installed"
        seen += 1
    assert seen > 0


def test_pysnc_subclass_table(emulator):
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_linux_server", batch_size=100)
    assert read_all(gr) == emulator.devices(lambda r: r["sys_class_name"] == "cmdb_ci_linux_server")
    gr = pysnc_client(emulator).GlideRecord("cmdb_ci_server", batch_size=100)
    servers = ("cmdb_ci_server", "cmdb_ci_linux_server", "cmdb_ci_win_server")
    assert read_all(gr) == emulator.devices(lambda r: r["sys_class_name"] in servers)


def test_pysnc_oauth_password_grant(emulator):
    flow = ServiceNowPasswordGrantFlow(USER, PASSWORD, CLIENT_ID, CLIENT_SECRET)
    gr = pysnc_client(emulator, auth=flow).GlideRecord("cmdb_ci_business_app", batch_size=3)
    assert read_all(gr) == emulator.rows("cmdb_ci_business_app")


def test_pysnc_rejected_credentials(emulator):
    gr = pysnc_client(emulator, auth=(USER, "wrong")).GlideRecord("cmdb_ci_computer")
    with pytest.raises(AuthenticationException):
        gr.query()


def pysnow_client(emulator):
    return pysnow.Client(host=urlparse(emulator.url).netloc, user=USER, password=PASSWORD, use_ssl=True)


def test_pysnow_pages_with_limit_and_offset(emulator):
    adapters = pysnow_client(emulator).resource(api_path="/table/cmdb_ci_network_adapter")
    rows, offset = [], 0
    while True:
        page = list(adapters.get(query="ORDERBYsys_id", limit=64, offset=offset).all())
        if not page:
            break
        rows.extend(page)
        offset += 64
    # References come as {"link", "value"} by default; the link points at the emulator.
    for r in rows:
        assert r["cmdb_ci"]["link"] == f"{emulator.url}/api/now/table/cmdb_ci/{r['cmdb_ci']['value']}"
        r["cmdb_ci"] = r["cmdb_ci"]["value"]
    assert rows == emulator.rows("cmdb_ci_network_adapter")


def test_pysnow_query_by_dict_and_fields(emulator):
    devices = pysnow_client(emulator).resource(api_path="/table/cmdb_ci_computer")
    got = list(devices.get(query={"os": "AIX"}, fields=["sys_id", "name"], limit=1000).all())
    expected = [{"sys_id": d["sys_id"], "name": d["name"]} for d in emulator.devices(lambda r: r["os"] == "AIX")]
    assert sorted(got, key=lambda r: r["sys_id"]) == expected
