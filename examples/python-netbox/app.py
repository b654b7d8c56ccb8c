"""A NetBox connector written in Python, built into a WebAssembly component
with componentize-py against the same WIT as the Rust connectors
(`exposure:connector@0.3.0`, world `connector`).

It reads NetBox's devices (`/api/dcim/devices/`) with keyset paging on the
id, incremental reads from a server-clock watermark (`last_updated__gte`),
typed errors and opaque cursors, and maps each device to the same record as
the Rust NetBox connector. The host holds the API token and writes it into
each request; this code never sees it.
"""

import json
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import exposure_connector_types as t

import netbox_http
from netbox_http import Endpoint, Response

URL = "url"
STREAM = "devices"
MAX_PAGE_SIZE = 1000  # NetBox's default MAX_PAGE_SIZE
CURSOR_VERSION = 1

Settings = List[Tuple[str, str]]


def setting(settings: Settings, name: str) -> Optional[str]:
    return next((v for k, v in settings if k == name), None)


def endpoint_of(settings: Settings) -> Endpoint:
    value = setting(settings, URL)
    if not value or not value.strip():
        raise Err(t.ConnectorError_InvalidSettings(f"The setting `{URL}` is required; set it in [settings]."))
    return Endpoint.parse(URL, value)


def lag_of(settings: Settings) -> int:
    text = setting(settings, "watermark_lag_seconds") or "60"
    if not text.strip().isdigit() or int(text) > 86400:
        raise Err(t.ConnectorError_InvalidSettings(
            f"The setting `watermark_lag_seconds` must be a whole number from 0 to 86400, not `{text}`."))
    return int(text)


def schema() -> str:
    """The devices' JSON Schema: the same fields as the Rust connector's."""
    text_fields = ["name", "status", "role", "deviceType", "manufacturer", "platform", "site",
                   "tenant", "serial", "assetTag", "primaryIp"]
    properties = {"id": {"type": "integer", "description": "NetBox's id of the device (the key)."},
                  "lastUpdated": {"type": "string", "format": "date-time",
                                  "description": "When NetBox last changed it (RFC 3339 UTC, seconds)."}}
    for field in text_fields:
        properties[field] = {"type": "string", "description": f"The device's {field}."}
    return json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": STREAM,
                       "description": "A NetBox DCIM device.", "type": "object",
                       "properties": properties, "required": ["id"], "additionalProperties": False})


def at(obj, *path):
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def utc_seconds(value: Optional[str]) -> Optional[str]:
    """A NetBox timestamp as RFC 3339 UTC, in seconds."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(device: dict) -> str:
    """One device as a record; fields NetBox has as null or "" are left out."""
    if not isinstance(device.get("id"), int):
        raise Err(t.ConnectorError_BadResponse("NetBox returned a device without an integer `id`; the response cannot be used."))
    fields = {
        "name": at(device, "name"),
        "status": at(device, "status", "value"),
        "role": at(device, "role", "name") or at(device, "device_role", "name"),
        "deviceType": at(device, "device_type", "model"),
        "manufacturer": at(device, "device_type", "manufacturer", "name"),
        "platform": at(device, "platform", "name"),
        "site": at(device, "site", "name"),
        "tenant": at(device, "tenant", "name"),
        "serial": at(device, "serial"),
        "assetTag": at(device, "asset_tag"),
        "primaryIp": at(device, "primary_ip", "address"),
        "lastUpdated": utc_seconds(at(device, "last_updated")),
    }
    out = {"id": device["id"]}
    out.update({k: v for k, v in fields.items() if isinstance(v, str) and v})
    return json.dumps(out, separators=(",", ":"))


def is_token_refusal(detail: str) -> bool:
    d = detail.lower()
    return ("token" in d and any(w in d for w in ("invalid", "expired", "disabled"))) or "credentials were not provided" in d


def status_error(resp: Response, what: str):
    """The contract's error for a NetBox answer that is not a 200."""
    try:
        detail = json.loads(resp.body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    said = detail if isinstance(detail, str) else resp.snippet()
    if resp.status in (401, 404) and resp.header("api-version") is None:
        return t.ConnectorError_NotFound(
            f"The request for {what} was answered by something that is not NetBox's API (HTTP {resp.status} without NetBox's `API-Version` header: {said}). Check `url`.")
    if resp.status == 401 or (resp.status == 403 and isinstance(detail, str) and is_token_refusal(detail)):
        return t.ConnectorError_Unauthenticated(
            f"NetBox rejected the API token (HTTP {resp.status}: {said}). Check the token the configuration names in [auth]; a v2 token is written whole, `nbt_<key>.<secret>`.")
    if resp.status == 403:
        return t.ConnectorError_Forbidden(
            f"NetBox refused to let the token's user view {what} (HTTP 403: {said}). Give it the view permission on dcim.view_device.")
    if resp.status == 404:
        return t.ConnectorError_NotFound(f"There is no NetBox API for {what} at this address (HTTP 404: {said}). Check `url`.")
    if resp.status == 429:
        retry = resp.header("retry-after")
        seconds = int(retry) if retry and retry.strip().isdigit() else None
        return t.ConnectorError_RateLimited(t.RateLimit(seconds, f"NetBox asked to slow down (HTTP 429: {said}). The sync waits and retries."))
    if 500 <= resp.status <= 599:
        return t.ConnectorError_TemporarilyUnavailable(
            f"NetBox answered HTTP {resp.status} ({said}); it may be restarting or overloaded. It is retried automatically.")
    return t.ConnectorError_BadResponse(f"NetBox answered HTTP {resp.status} to a read of {what} ({said}).")


def get_json(endpoint: Endpoint, path: str, what: str) -> Tuple[Response, dict]:
    resp = netbox_http.get(endpoint, path)
    if resp.status != 200:
        raise Err(status_error(resp, what))
    try:
        body = json.loads(resp.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise Err(t.ConnectorError_BadResponse(
            f"The answer for {what} is not a NetBox list (`count` and `results`); {resp.snippet()}. Is `url` a NetBox server?"))
    return resp, body


def server_watermark(resp: Response, lag: int) -> Optional[str]:
    """The server's clock (its Date header) minus the lag, RFC 3339 UTC."""
    date = resp.header("date")
    if not date:
        return None
    try:
        at_time = parsedate_to_datetime(date) - timedelta(seconds=lag)
    except (TypeError, ValueError):
        return None
    return at_time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_cursor(text: Optional[str]) -> dict:
    if text is None:
        return {"v": CURSOR_VERSION, "after": 0}
    try:
        cursor = json.loads(text)
    except ValueError:
        cursor = None
    if not isinstance(cursor, dict) or cursor.get("v") != CURSOR_VERSION or not isinstance(cursor.get("after"), int):
        raise Err(t.ConnectorError_InvalidSettings(
            "The stored cursor is not one this connector wrote; reset the stream's state and run a full sync."))
    return cursor


class Source(exports.Source):
    """The contract's three functions."""

    def info(self) -> t.ConnectorInfo:
        def api_key(prefix: str, key_prefix: Optional[str]):
            return t.AuthMethod_ApiKey(t.ApiKeyMethod("authorization", prefix, key_prefix))

        return t.ConnectorInfo(
            name="netbox-python",
            version="0.1.0",
            description="Reads NetBox's DCIM devices, read-only: the guide's connector in Python (componentize-py).",
            settings=[
                t.SettingInfo(URL, "The NetBox server: `netbox.example.com`, or `http://127.0.0.1:PORT` for a local test server.", True, None, True),
                t.SettingInfo("watermark_lag_seconds", "Seconds taken off the server's clock for the incremental watermark (0-86400).", False, "60", False),
            ],
            auth_methods=[api_key("Bearer ", "nbt_"), api_key("Token ", None)],
            streams=[t.StreamInfo(STREAM, "Every DCIM device, in id order.", "id", schema(), True, [], "lastUpdated")],
        )

    def check(self, settings: Settings) -> t.CheckReport:
        endpoint = endpoint_of(settings)
        lag_of(settings)
        root = netbox_http.get(endpoint, "/api/")
        version = root.header("api-version")
        if version is None:
            raise Err(t.ConnectorError_NotFound(
                f"`{endpoint.authority}` is not NetBox's API: /api/ answered HTTP {root.status} without NetBox's `API-Version` header. Check `url`."))
        try:
            _, body = get_json(endpoint, "/api/dcim/devices/?" + netbox_http.query([("brief", "1"), ("limit", "1")]), "devices")
        except Err as e:
            if isinstance(e.value, (t.ConnectorError_Unauthenticated, t.ConnectorError_Unreachable, t.ConnectorError_InvalidSettings)):
                raise
            return t.CheckReport([t.StreamCheck(STREAM, False, [], e.value.value if isinstance(e.value.value, str) else e.value.value.message)])
        return t.CheckReport([t.StreamCheck(STREAM, True, [], f"NetBox {version.strip()} counts {body.get('count')} devices that this token may read.")])

    def read(self, settings: Settings, request: t.ReadRequest) -> t.Page:
        endpoint = endpoint_of(settings)
        lag = lag_of(settings)
        if request.stream_name != STREAM:
            raise Err(t.ConnectorError_InvalidSettings(f"There is no stream `{request.stream_name}`; the stream is `devices`."))
        for what, value in (("watermark", request.watermark), ("deletions-since watermark", request.deletions_since)):
            if value is not None and utc_seconds(value) is None:
                raise Err(t.ConnectorError_InvalidSettings(f"The stored {what} `{value}` is not an RFC 3339 date-time; run a full sync to replace it."))
        counters = t.PageCounters(0, 0, None, 0)
        # One keyset walk reads the stream: partition 0 reads everything, the others nothing.
        if request.partition.index > 0:
            return t.Page([], [], None, None, None, counters)
        cursor = parse_cursor(request.cursor)
        limit = max(1, min(request.page_size, MAX_PAGE_SIZE))
        params = [("ordering", "id"), ("limit", str(limit)), ("id__gt", str(cursor["after"]))]
        if request.watermark is not None:
            params.append(("last_updated__gte", request.watermark))
        resp, body = get_json(endpoint, "/api/dcim/devices/?" + netbox_http.query(params), "devices")
        watermark = cursor.get("watermark") or server_watermark(resp, lag)
        records, last = [], cursor["after"]
        for device in body["results"]:
            rec = record(device)
            if device["id"] <= last:
                raise Err(t.ConnectorError_BadResponse("NetBox returned devices out of id order; it did not honour `ordering=id`."))
            last = device["id"]
            records.append(rec)
        count = body.get("count")
        done = len(records) >= count if isinstance(count, int) else not records
        next_cursor = None if done else json.dumps({"v": CURSOR_VERSION, "after": last, "watermark": watermark})
        first = request.cursor is None
        counters = t.PageCounters(limit, len(records), count if first and isinstance(count, int) else None, 1)
        return t.Page(records, [], None, next_cursor, watermark, counters)
