"""NetBox's own Python client, pynetbox, unchanged, against the NetBox emulator.

pynetbox pages through every endpoint the NetBox connector reads (with
NetBox's default page size, an explicit one, one over MAX_PAGE_SIZE, and
threaded offset paging), filters, gets single objects, counts, reads the
API version and status, and authenticates with both token formats; a bad
token of either format is refused as NetBox refuses it. Every answer is
compared with the emulator's data as it dumps it (`--dump-data`), not
through HTTP.

Run by .ci/run: NETBOX_EMULATOR names the emulator binary.
"""

import json
import os
import subprocess

import pynetbox
import pytest

V1_TOKEN = "0123456789abcdef0123456789abcdef01234567"
V2_TOKEN = "nbt_8Hk2qT4mZx.Wc9vJr3LpN7sYd2FgA6hUe1KoBi5XtMq"
DEVICES = 1300  # more than MAX_PAGE_SIZE (1000), so paging is capped


class NetBox:
    def __init__(self, url, data):
        self.url = url
        self.data = data

    def ids(self, endpoint, predicate=lambda o: True):
        return [o["id"] for o in self.data[endpoint] if predicate(o)]

    def api(self, token=V1_TOKEN, **kwargs):
        return pynetbox.api(self.url, token=token, **kwargs)


@pytest.fixture(scope="session")
def netbox(tmp_path_factory):
    dump = tmp_path_factory.mktemp("netbox") / "data.json"
    proc = subprocess.Popen(
        [
            os.environ["NETBOX_EMULATOR"], "--listen", "127.0.0.1:0", "--devices", str(DEVICES),
            "--seed", "5", "--dump-data", str(dump),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        with open(dump, encoding="utf-8") as f:
            yield NetBox(line.split()[-1], json.load(f))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ids(records):
    return [r.id for r in records]


@pytest.mark.parametrize(
    "endpoint,app,name",
    [
        ("devices", "dcim", "devices"),
        ("interfaces", "dcim", "interfaces"),
        ("ip_addresses", "ipam", "ip_addresses"),
    ],
)
def test_all_pages_through_every_endpoint(netbox, endpoint, app, name):
    api = netbox.api()
    expected = netbox.ids(endpoint)
    assert len(expected) > 1000
    view = getattr(getattr(api, app), name)
    # Default: one page of 50, then pynetbox asks for the rest in one page,
    # which the server caps at 1000 and continues with `next` links.
    assert ids(view.all()) == expected
    assert ids(view.all(limit=137)) == expected
    assert ids(view.all(limit=5000)) == expected
    assert view.count() == len(expected)


def test_threaded_offset_paging_gets_every_device_once(netbox):
    api = netbox.api(threading=True)
    assert sorted(ids(api.dcim.devices.all(limit=100))) == netbox.ids("devices")


def test_full_records_match_the_data(netbox):
    api = netbox.api()
    by_id = {d["id"]: d for d in netbox.data["devices"]}
    for device in api.dcim.devices.all(limit=500):
        expected = by_id[device.id]
        assert dict(device)["serial"] == expected["serial"]
        assert device.name == expected["name"]
        assert device.status.value == expected["status"]["value"]
        assert device.device_type.manufacturer.name == expected["device_type"]["manufacturer"]["name"]
        assert (device.primary_ip.address if device.primary_ip else None) == (
            expected["primary_ip"]["address"] if expected["primary_ip"] else None
        )
        assert str(device.last_updated) == expected["last_updated"]


def test_filters_select_what_netbox_would(netbox):
    api = netbox.api(token=V2_TOKEN)
    site = netbox.data["devices"][3]["site"]["slug"]
    assert ids(api.dcim.devices.filter(site=site)) == netbox.ids(
        "devices", lambda d: d["site"]["slug"] == site
    )
    device_id = netbox.data["devices"][7]["id"]
    interfaces = ids(api.dcim.interfaces.filter(device_id=device_id))
    assert interfaces and interfaces == netbox.ids(
        "interfaces", lambda i: i["device"]["id"] == device_id
    )
    assigned = next(a for a in netbox.data["ip_addresses"] if a["assigned_object_type"] == "dcim.interface")
    interface_id = assigned["assigned_object_id"]
    assert ids(api.ipam.ip_addresses.filter(interface_id=interface_id)) == netbox.ids(
        "ip_addresses",
        lambda a: a["assigned_object_type"] == "dcim.interface" and a["assigned_object_id"] == interface_id,
    )
    middle = netbox.data["devices"][600]["id"]
    assert ids(api.dcim.devices.filter(id__gt=middle, ordering="id", limit=100)) == netbox.ids(
        "devices", lambda d: d["id"] > middle
    )
    since = sorted(d["last_updated"] for d in netbox.data["devices"])[-40]
    assert sorted(ids(api.dcim.devices.filter(last_updated__gte=since))) == netbox.ids(
        "devices", lambda d: d["last_updated"] >= since
    )


def test_get_finds_one_object_or_none(netbox):
    api = netbox.api()
    expected = netbox.data["devices"][42]
    device = api.dcim.devices.get(expected["id"])
    assert device.name == expected["name"] and device.id == expected["id"]
    named = next(d for d in netbox.data["devices"] if d["name"])
    assert api.dcim.devices.get(name=named["name"]).id == named["id"]
    assert api.dcim.devices.get(10**9) is None
    interface = netbox.data["interfaces"][9]
    assert api.dcim.interfaces.get(interface["id"]).device.id == interface["device"]["id"]


def test_both_token_formats_authenticate_and_the_version_is_read(netbox):
    for token in (V1_TOKEN, V2_TOKEN):
        api = netbox.api(token=token)
        assert api.version == "4.5"
        assert api.status()["netbox-version"].startswith("4.5")
        assert api.dcim.devices.count() == DEVICES


@pytest.mark.parametrize(
    "token,message",
    [
        ("f" * 40, "Invalid v1 token"),
        ("nbt_unknown.secret", "Invalid v2 token"),
    ],
)
def test_a_bad_token_is_refused_as_netbox_refuses_it(netbox, token, message):
    with pytest.raises(pynetbox.RequestError) as refused:
        list(netbox.api(token=token).dcim.devices.all())
    assert refused.value.req.status_code == 403
    assert message in refused.value.error
