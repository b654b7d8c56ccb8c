"""Blocking GET requests over wasi:http, and transport failures as the
contract's typed errors.

The host gives a connector one origin (its endpoint setting), writes the
credential into each request on the way out, and enforces time-outs and
size caps; this module only builds the request, waits for the answer and
reads the body.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple
from urllib.parse import quote

from componentize_py_types import Err
from wit_world.imports import exposure_connector_types as t
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http

# Ask for at most this much at a time from the body stream.
READ_CHUNK = 64 * 1024


@dataclass
class Endpoint:
    """Where the source is: scheme and host[:port]."""

    https: bool
    authority: str

    @staticmethod
    def parse(setting: str, value: str) -> "Endpoint":
        """`host[:port]`, `https://host[:port]`, or `http://IP:port` for a loopback IP."""
        text = value.strip().rstrip("/")
        https = True
        if text.startswith("https://"):
            text = text[len("https://"):]
        elif text.startswith("http://"):
            text, https = text[len("http://"):], False
            host = text.rsplit(":", 1)[0].strip("[]")
            if not (host.startswith("127.") or host == "::1"):
                raise Err(t.ConnectorError_InvalidSettings(
                    f"The setting `{setting}` may use http:// only for a loopback IP (127.0.0.1); use https:// for `{value}`."))
        if not text or any(c in text for c in "/?#@ "):
            raise Err(t.ConnectorError_InvalidSettings(
                f"The setting `{setting}` must be a host (e.g. netbox.example.com), optionally with https:// and a port, not `{value}`."))
        return Endpoint(https, text.lower())


@dataclass
class Response:
    """A whole response."""

    status: int
    headers: List[Tuple[str, str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name` (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def snippet(self) -> str:
        """The body's start, on one line, for messages."""
        text = " ".join(self.body[:160].decode("utf-8", "replace").split())
        return f"body starts with `{text}`" if text else "empty body"


def query(params: List[Tuple[str, str]]) -> str:
    """`name=value&...`, percent-encoded."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


def get(endpoint: Endpoint, path_and_query: str) -> Response:
    """Sends one GET and returns the whole response; raises the contract's
    error for a transport failure."""
    headers = http.Fields.from_list([("accept", b"application/json")])
    request = http.OutgoingRequest(headers)
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if endpoint.https else http.Scheme_Http())
    request.set_authority(endpoint.authority)
    request.set_path_with_query(path_and_query)
    url = f"{'https' if endpoint.https else 'http'}://{endpoint.authority}{path_and_query}"
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        raise Err(transport_error(e.value, endpoint.authority, url))
    with future:
        future.subscribe().block()
        answer = future.get()
    if answer is None or isinstance(answer.value, Err):
        raise Err(t.ConnectorError_Internal(f"the response to {url} could not be taken"))
    result = answer.value.value
    if isinstance(result, Err):
        raise Err(transport_error(result.value, endpoint.authority, url))
    return read_response(result, endpoint.authority, url)


def read_response(response: http.IncomingResponse, authority: str, url: str) -> Response:
    """Status, headers and the whole body, dropping each resource in order."""
    with response:
        status = response.status()
        with response.headers() as fields:
            headers = [(k, v.decode("latin-1")) for k, v in fields.entries()]
        body = response.consume()
        chunks = []
        with body:
            with body.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(READ_CHUNK))
                    except Err as e:
                        if isinstance(e.value, streams.StreamError_Closed):
                            break
                        raise Err(t.ConnectorError_TemporarilyUnavailable(
                            f"The connection to `{authority}` failed while the body of {url} arrived; it is retried automatically."))
    return Response(status, headers, b"".join(chunks))


def transport_error(code, authority: str, url: str):
    """The contract's error, with an operator message, for a wasi:http error code."""
    host = authority.rsplit(":", 1)[0]
    name = type(code).__name__.removeprefix("ErrorCode_")
    if name in ("DnsError", "DnsTimeout"):
        return t.ConnectorError_Unreachable(
            f"The remote server name could not be resolved: check the NetBox server hostname (`{host}`). ({name})")
    if name in ("ConnectionRefused", "DestinationNotFound", "DestinationUnavailable", "DestinationIpUnroutable"):
        return t.ConnectorError_Unreachable(
            f"Could not connect to `{authority}`: check the NetBox server address and that this machine may reach it (firewall, proxy). ({name})")
    if name.startswith("Tls"):
        return t.ConnectorError_Unreachable(
            f"The TLS connection to `{authority}` failed: the server's certificate is not trusted or the handshake failed. ({name})")
    if name in ("HttpRequestDenied", "DestinationIpProhibited"):
        return t.ConnectorError_Unreachable(
            f"The host refused the request to `{authority}`: only the configured NetBox server may be contacted, at a public address. ({name})")
    if name.endswith("Timeout"):
        return t.ConnectorError_TemporarilyUnavailable(
            f"The request to `{authority}` timed out; NetBox may be overloaded. It is retried automatically. ({name})")
    if name == "HttpResponseBodySize":
        return t.ConnectorError_BadResponse(
            f"The response from `{authority}` was larger than the host allows; lower the page size. ({name})")
    return t.ConnectorError_TemporarilyUnavailable(
        f"The connection to `{authority}` failed before a complete response arrived ({url}); it is retried automatically. ({name})")
