"""Fetching recordings from CRM URLs, against a real HTTP server on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests.adapters

from callqa.crm.fetch import MAX_REDIRECTS, fetch_url
from callqa.crm.file_drop import read_remote, read_source
from callqa.errors import AudioError, ConfigError
from callqa.settings import (
    ALLOW_PRIVATE_URLS_ENV,
    UrlAllowList,
    load_settings,
    private_url_allow_list,
)
from tests.fakes import AUDIO, FakeRecordingServer

SECRET = "SECRET-tok-9f8e7d"
PUBLIC_ADDRESS = "93.184.215.14"  # a public host; the fake DNS routes it to loopback
LOOPBACK = UrlAllowList.parse("127.0.0.1")
NOTHING = UrlAllowList()


@pytest.fixture
def server() -> Iterator[FakeRecordingServer]:
    srv = FakeRecordingServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _private_urls_not_allowed_by_env(monkeypatch):
    monkeypatch.delenv(ALLOW_PRIVATE_URLS_ENV, raising=False)


class FakeDNS:
    """`socket.getaddrinfo` for the SSRF guard and for the HTTP client's connect alike.

    `answers[name]` is what `name` resolves to, one answer per lookup (the last one
    repeats), so a name can rebind between lookups. PUBLIC_ADDRESS is routed to loopback,
    where the fake servers listen, as if they were that public host. Every host looked up
    is recorded in `lookups`: an IP address there is one the client connected to.
    """

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {"localhost": [PUBLIC_ADDRESS]}
        self.lookups: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        self.lookups.append(host)
        if host in self.answers:
            queue = self.answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
        elif host == PUBLIC_ADDRESS:
            address = "127.0.0.1"
        else:
            return self.real(host, port, *args, **kwargs)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


@pytest.fixture
def fake_dns(monkeypatch) -> FakeDNS:
    """'localhost' resolves to a public address (as a CRM host would); other names as
    set in `fake_dns.answers`."""
    dns = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


def assert_no_secret(message: str) -> None:
    assert SECRET not in message
    assert "token" not in message
    assert "?" not in message.split(" ", 1)[0]


# --- the SSRF guard -----------------------------------------------------------------


def test_loopback_refused_by_default(server):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"/audio.wav?token={SECRET}"))
    message = str(info.value)
    assert "non-public address 127.0.0.1" in message
    assert ALLOW_PRIVATE_URLS_ENV in message
    assert message.startswith(server.url("/audio.wav") + ":")
    assert_no_secret(message)
    assert server.paths == []  # refused before any request was made


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/a.wav",
        "http://[::1]/a.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/a.wav",
        "https://192.168.1.20/a.wav",
        "http://0.0.0.0/a.wav",
        "http://[fd00::1]/a.wav",
    ],
)
def test_private_and_link_local_addresses_refused(url):
    with pytest.raises(AudioError, match="non-public address"):
        fetch_url(url)


def test_allow_list_fetches_bytes(server):
    assert fetch_url(server.url(f"/audio.wav?token={SECRET}"), allow=LOOPBACK) == AUDIO
    # The query string is sent to the server (the CRM needs its token).
    assert server.paths == [f"/audio.wav?token={SECRET}"]


def test_env_variable_allows_private(server, monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, "127.0.0.1")
    assert fetch_url(server.url("/audio.wav")) == AUDIO
    # An explicit argument wins over the environment.
    with pytest.raises(AudioError, match="non-public"):
        fetch_url(server.url("/audio.wav"), allow=NOTHING)


def test_custom_headers_are_sent(server):
    fetch_url(
        server.url("/audio.wav"), allow=LOOPBACK, headers={"Authorization": "Bearer crm-token"}
    )
    assert server.headers[0].get("Authorization") == "Bearer crm-token"


def test_custom_headers_not_sent_after_a_redirect_to_another_origin(server, fake_dns):
    auth = {"Authorization": "Bearer crm-token"}
    elsewhere = quote(server.url("/audio.wav", host="localhost"), safe="")
    assert fetch_url(server.url(f"/redirect?to={elsewhere}"), allow=LOOPBACK, headers=auth) == AUDIO
    assert [h.get("Authorization") for h in server.headers] == ["Bearer crm-token", None]
    # Redirects within the origin keep them.
    server.headers.clear()
    assert fetch_url(server.url("/chain/2"), allow=LOOPBACK, headers=auth) == AUDIO
    assert [h.get("Authorization") for h in server.headers] == ["Bearer crm-token"] * 3


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:99999/a.wav?token={SECRET}",
        f"http://127.0.0.1:abc/a.wav?token={SECRET}",
    ],
)
@pytest.mark.parametrize("allow", [LOOPBACK, NOTHING])
def test_invalid_port_is_an_audio_error(url, allow):
    with pytest.raises(AudioError) as info:
        fetch_url(url, allow=allow)
    assert "invalid URL" in str(info.value) and "Port" in str(info.value)
    assert_no_secret(str(info.value))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/recording.wav",
        "gopher://example.com/1",
        "//example.com/recording.wav",
    ],
)
def test_non_http_schemes_refused(url):
    with pytest.raises(AudioError, match="only http and https"):
        fetch_url(url, allow=LOOPBACK)


def test_url_without_host_refused():
    with pytest.raises(AudioError, match="no host"):
        fetch_url("http:///recording.wav", allow=LOOPBACK)


def test_unresolvable_host_is_an_audio_error():
    with pytest.raises(AudioError, match="cannot resolve host"):
        fetch_url("http://callqa-test.invalid/a.wav")


# --- redirects ----------------------------------------------------------------------


def test_redirect_to_loopback_refused(server, fake_dns):
    target = server.url(f"/audio.wav?sig={SECRET}")
    start = server.url(f"/redirect?to={target}&token={SECRET}", host="localhost")

    with pytest.raises(AudioError) as info:
        fetch_url(start)

    message = str(info.value)
    assert "non-public address 127.0.0.1" in message
    assert message.startswith(server.url("/audio.wav") + ":")
    assert_no_secret(message)
    # The first hop was fetched; the loopback target never was.
    assert [urlsplit(p).path for p in server.paths] == ["/redirect"]


def test_public_host_is_fetched(server, fake_dns):
    """Control for the test above: the same public-looking host is fetched directly."""
    assert fetch_url(server.url("/audio.wav", host="localhost")) == AUDIO


def test_redirect_followed_when_private_allowed(server):
    start = server.url("/redirect?to=/audio.wav")
    assert fetch_url(start, allow=LOOPBACK) == AUDIO
    assert server.paths == ["/redirect?to=/audio.wav", "/audio.wav"]


def test_redirect_to_file_scheme_refused(server):
    with pytest.raises(AudioError, match="only http and https"):
        fetch_url(server.url("/redirect?to=file:///etc/passwd"), allow=LOOPBACK)


def test_redirect_chain_of_three_is_followed(server):
    assert fetch_url(server.url(f"/chain/{MAX_REDIRECTS}"), allow=LOOPBACK) == AUDIO
    assert len(server.paths) == MAX_REDIRECTS + 1


def test_redirect_chain_longer_than_three_refused(server):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"/chain/{MAX_REDIRECTS + 1}?token={SECRET}"), allow=LOOPBACK)
    message = str(info.value)
    assert f"more than {MAX_REDIRECTS} redirects" in message
    assert_no_secret(message)
    # It stopped following: the final target was never requested.
    assert len(server.paths) == MAX_REDIRECTS + 1
    assert all(urlsplit(p).path != "/audio.wav" for p in server.paths)


# --- DNS rebinding: the client connects to the address that was checked -------------


def test_rebinding_name_cannot_reach_loopback(server, fake_dns):
    """The name answers a public address to the check, then loopback: the client must
    not look it up again but connect to the address that was checked."""
    fake_dns.answers["rebind.test"] = [PUBLIC_ADDRESS, "127.0.0.1"]
    assert fetch_url(server.url("/audio.wav", host="rebind.test")) == AUDIO
    # One lookup of the name; the connection went to the checked (public) address.
    assert fake_dns.lookups == ["rebind.test", PUBLIC_ADDRESS]
    # The server still saw the name, not the address.
    assert server.headers[0]["Host"] == f"rebind.test:{server.port}"


def test_rebinding_name_checked_on_its_first_answer(server, fake_dns):
    fake_dns.answers["rebind.test"] = ["127.0.0.1", PUBLIC_ADDRESS]
    with pytest.raises(AudioError, match="non-public address 127.0.0.1"):
        fetch_url(server.url("/audio.wav", host="rebind.test"))
    assert fake_dns.lookups == ["rebind.test"]
    assert server.paths == []


def test_every_redirect_hop_is_pinned(server, fake_dns):
    fake_dns.answers["rebind.test"] = [PUBLIC_ADDRESS, "127.0.0.1"]
    target = server.url("/audio.wav", host="rebind.test")
    assert fetch_url(server.url(f"/redirect?to={target}", host="localhost")) == AUDIO
    assert fake_dns.lookups == ["localhost", PUBLIC_ADDRESS, "rebind.test", PUBLIC_ADDRESS]
    assert [h["Host"] for h in server.headers] == [
        f"localhost:{server.port}",
        f"rebind.test:{server.port}",
    ]


def _tls_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for `name` (a DNS name only, no IP address) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, key, issuer, issuer_key, ca, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                False,
            )
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("callqa test CA", ca_key, "callqa test CA", ca_key, ca=True)
    cert = certificate(name, key, "callqa test CA", ca_key, ca=False, san=name)
    pem = serialization.Encoding.PEM
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """Start a one-shot HTTPS server on loopback whose certificate names `name`; the client
    trusts its CA. Returns (port, seen) where seen collects the SNI name and request."""
    servers = []

    def start(name: str, drip: bool = False) -> tuple[int, dict]:
        ca, cert, key = _tls_files(tmp_path, name)
        monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(ca))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        seen: dict = {}
        context.sni_callback = lambda _sock, sni, _ctx: seen.__setitem__("sni", sni)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(5)
        servers.append(listener)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True) as tls:
                    seen["request"] = tls.recv(65536).decode()
                    tls.sendall(b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n")
                    for byte in b"hello":  # one byte every 0.3 s when dripping
                        time.sleep(0.3 if drip else 0)
                        tls.sendall(bytes([byte]))
            except (OSError, ssl.SSLError):  # the client refused the certificate
                pass

        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1], seen

    yield start
    for listener in servers:
        listener.close()


def test_https_pinned_address_keeps_sni_and_certificate_name(tls_server, fake_dns):
    port, seen = tls_server("crm.test")
    fake_dns.answers["crm.test"] = [PUBLIC_ADDRESS, "127.0.0.1"]
    assert fetch_url(f"https://crm.test:{port}/a.wav") == b"hello"
    assert fake_dns.lookups == ["crm.test", PUBLIC_ADDRESS]
    # SNI and the certificate check used the name (the certificate has no IP address).
    assert seen["sni"] == "crm.test"
    assert f"Host: crm.test:{port}" in seen["request"]


def test_https_certificate_for_another_name_refused(tls_server, fake_dns):
    port, seen = tls_server("other.test")
    fake_dns.answers["crm.test"] = [PUBLIC_ADDRESS]
    with pytest.raises(AudioError, match=r"download failed \(SSLError\)"):
        fetch_url(f"https://crm.test:{port}/a.wav?token={SECRET}")
    assert "request" not in seen


def test_https_slow_drip_stopped_at_the_deadline(tls_server, fake_dns):
    port, _ = tls_server("crm.test", drip=True)
    fake_dns.answers["crm.test"] = [PUBLIC_ADDRESS]
    started = time.monotonic()
    with pytest.raises(AudioError, match="0.5-second deadline"):
        fetch_url(f"https://crm.test:{port}/a.wav", deadline_s=0.5)
    assert time.monotonic() - started < 1.2  # the whole drip would take 1.5 s


# --- the allow-list (CALLQA_ALLOW_PRIVATE_URLS) -------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE"])
def test_old_switch_values_are_a_config_error(value, server, monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, value)
    for call in (
        private_url_allow_list,
        lambda: fetch_url(server.url("/audio.wav")),
        lambda: load_settings({ALLOW_PRIVATE_URLS_ENV: value}),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert ALLOW_PRIVATE_URLS_ENV in message
        assert "list the hosts or networks" in message and "127.0.0.1" in message
    assert server.paths == []


@pytest.mark.parametrize(
    "value",
    ["169.254.169.254", "169.254.0.0/16", "10.0.0.0/8, 169.254.0.0/20", "fe80::/10", "0.0.0.0/0"],
)
def test_listing_link_local_is_a_config_error(value):
    with pytest.raises(ConfigError) as info:
        UrlAllowList.parse(value)
    message = str(info.value)
    assert ALLOW_PRIVATE_URLS_ENV in message and "link-local" in message
    assert repr(value.split(",")[-1].strip()) in message  # names the entry


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not a host", "300.1.1.1", "crm/x"])
def test_malformed_entry_is_a_config_error(value):
    with pytest.raises(ConfigError, match=f"{ALLOW_PRIVATE_URLS_ENV}: {value!r} is neither"):
        UrlAllowList.parse(value)


def test_allow_list_parses_hosts_and_networks():
    allow = UrlAllowList.parse(" 127.0.0.1, 10.20.0.0/16 ,CRM.internal., ")
    assert allow.hosts == {"crm.internal"}
    assert allow.networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.20.0.0/16"),
    )
    assert UrlAllowList.parse("") == NOTHING


def test_listed_host_name_allows_its_private_address(server, fake_dns):
    fake_dns.answers["crm.internal"] = ["127.0.0.1"]
    fake_dns.answers["other.internal"] = ["127.0.0.1"]
    allow = UrlAllowList.parse("crm.internal")
    assert fetch_url(server.url("/audio.wav", host="crm.internal"), allow=allow) == AUDIO
    # The address itself is not listed: another name resolving to it is refused.
    with pytest.raises(AudioError, match=f"non-public address 127.0.0.1.*{ALLOW_PRIVATE_URLS_ENV}"):
        fetch_url(server.url("/audio.wav", host="other.internal"), allow=allow)
    assert len(server.paths) == 1


def test_listed_network_allows_only_its_addresses(server):
    assert fetch_url(server.url("/audio.wav"), allow=UrlAllowList.parse("127.0.0.0/8")) == AUDIO
    with pytest.raises(AudioError, match="non-public address 127.0.0.1"):
        fetch_url(server.url("/audio.wav"), allow=UrlAllowList.parse("10.0.0.0/8,127.0.0.2"))


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("metadata.test", "169.254.169.254"),
        ("metadata.test", "fe80::1"),
        ("metadata.test", "100.100.100.200"),
        ("[::ffff:169.254.169.254]", None),
        ("[64:ff9b::a9fe:a9fe]", None),  # NAT64 for 169.254.169.254
    ],
)
def test_metadata_addresses_never_fetched_even_when_listed(host, address, fake_dns):
    if address:
        fake_dns.answers[host] = [address]
    # Listed every way the parser would not take: by name, and as networks built in code.
    allow = UrlAllowList(
        hosts=frozenset({"metadata.test"}),
        networks=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
    )
    with pytest.raises(AudioError, match="never fetched"):
        fetch_url(f"http://{host}/latest/meta-data/", allow=allow)


def test_ipv4_mapped_loopback_is_checked_as_ipv4():
    with pytest.raises(AudioError) as info:
        fetch_url(f"http://[::ffff:127.0.0.1]/a.wav?token={SECRET}")
    message = str(info.value)
    assert message.startswith("http://[::ffff:127.0.0.1]/a.wav:")
    assert "non-public address 127.0.0.1" in message
    assert f"{ALLOW_PRIVATE_URLS_ENV}=127.0.0.1" in message
    assert_no_secret(message)


# --- the overall deadline -----------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "headers"])
def test_slow_drip_stopped_at_the_deadline(server, where):
    """One byte every 50 ms never trips the 60 s read timeout; the deadline stops it."""
    query = f"bytes=200&every=0.05&token={SECRET}" + ("&headers=1" if where == "headers" else "")
    started = time.monotonic()
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"/drip?{query}"), allow=LOOPBACK, deadline_s=0.5)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert message.startswith(server.url("/drip") + ":")
    assert "0.5-second deadline" in message
    assert_no_secret(message)
    assert 0.5 <= elapsed < 2.0  # the whole drip would take 10 s


def test_deadline_covers_redirects(server):
    target = quote("/drip?bytes=200&every=0.05", safe="")
    started = time.monotonic()
    with pytest.raises(AudioError, match="0.5-second deadline"):
        fetch_url(server.url(f"/redirect?to={target}"), allow=LOOPBACK, deadline_s=0.5)
    assert time.monotonic() - started < 2.0
    assert [urlsplit(p).path for p in server.paths] == ["/redirect", "/drip"]


def test_fast_download_within_a_short_deadline(server):
    assert fetch_url(server.url("/stream.wav"), allow=LOOPBACK, deadline_s=2) == AUDIO * 4


# --- size limits and HTTP errors ----------------------------------------------------


def test_declared_size_over_limit_refused(server):
    with pytest.raises(AudioError) as info:
        fetch_url(
            server.url(f"/audio.wav?token={SECRET}"), allow=LOOPBACK, max_bytes=len(AUDIO) - 1
        )
    message = str(info.value)
    assert f"{len(AUDIO)} bytes exceeds the {len(AUDIO) - 1}-byte limit" in message
    assert_no_secret(message)


def test_lying_content_length_refused_before_reading(server):
    with pytest.raises(AudioError, match="exceeds the 1000000-byte limit"):
        fetch_url(server.url("/liar.wav"), allow=LOOPBACK, max_bytes=1_000_000)


def test_size_exactly_at_limit_is_fine(server):
    assert fetch_url(server.url("/audio.wav"), allow=LOOPBACK, max_bytes=len(AUDIO)) == AUDIO


def test_streamed_size_over_limit_refused_without_content_length(server):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"/stream.wav?token={SECRET}"), allow=LOOPBACK, max_bytes=1000)
    message = str(info.value)
    assert "more than 1000 bytes" in message and "download stopped" in message
    assert_no_secret(message)


@pytest.mark.parametrize(("max_bytes", "ok"), [(len(AUDIO), True), (len(AUDIO) - 1, False)])
def test_malformed_content_length_falls_back_to_the_streamed_limit(server, max_bytes, ok):
    url = server.url("/garbled.wav")
    if ok:
        assert fetch_url(url, allow=LOOPBACK, max_bytes=max_bytes) == AUDIO
    else:
        with pytest.raises(AudioError, match="download stopped"):
            fetch_url(url, allow=LOOPBACK, max_bytes=max_bytes)


def test_streamed_body_within_limit_is_read_whole(server):
    assert fetch_url(server.url("/stream.wav"), allow=LOOPBACK) == AUDIO * 4


@pytest.mark.parametrize(("path", "status"), [("/missing.wav", 404), ("/error", 500)])
def test_http_error_status(server, path, status):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"{path}?token={SECRET}"), allow=LOOPBACK)
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert message.startswith(server.url(path) + ":")
    assert_no_secret(message)


def test_connection_refused_is_an_audio_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(AudioError) as info:
        fetch_url(f"http://127.0.0.1:{port}/a.wav?token={SECRET}", allow=LOOPBACK)
    assert "download failed (ConnectionError)" in str(info.value)
    assert_no_secret(str(info.value))


def test_credentials_in_url_are_not_echoed(server):
    with pytest.raises(AudioError) as info:
        fetch_url(f"http://crm-user:{SECRET}@127.0.0.1:{server.port}/missing.wav")
    message = str(info.value)
    assert SECRET not in message and "crm-user" not in message
    assert "non-public address" in message


# --- intake.read_source -------------------------------------------------------------


def test_read_source_missing_local_file_names_the_path(tmp_path):
    missing = tmp_path / "calls" / "nope.wav"
    with pytest.raises(AudioError) as info:
        read_source(str(missing))
    assert str(missing) in str(info.value)
    assert "not found" in str(info.value)
    with pytest.raises(AudioError) as info:
        read_source(missing.as_uri())
    assert str(missing) in str(info.value)


def test_read_source_reads_local_file_and_enforces_limit(tmp_path):
    path = tmp_path / "call.wav"
    path.write_bytes(AUDIO)
    assert read_source(str(path)) == AUDIO
    assert read_source(path.as_uri()) == AUDIO
    with pytest.raises(AudioError, match="byte limit"):
        read_source(str(path), max_bytes=100)


def test_read_source_directory_is_not_a_recording(tmp_path):
    with pytest.raises(AudioError, match="recording not found"):
        read_source(str(tmp_path))


def test_read_source_unsupported_scheme():
    with pytest.raises(AudioError, match="unsupported recording location"):
        read_source("s3://bucket/call.wav")


def test_read_source_http_goes_through_the_guard(server, monkeypatch):
    with pytest.raises(AudioError, match="non-public address"):
        read_source(server.url("/audio.wav"))
    assert server.paths == []
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, "127.0.0.1")
    assert read_source(server.url("/audio.wav")) == AUDIO
    with pytest.raises(AudioError, match="exceeds"):
        read_source(server.url("/audio.wav"), max_bytes=10)


# --- read_source(roots=...) and read_remote -------------------------------------------


@pytest.fixture
def drop(tmp_path) -> Path:
    """An allowed folder holding call.wav, next to a secret file outside it."""
    root = tmp_path / "drop"
    root.mkdir()
    (root / "call.wav").write_bytes(AUDIO)
    (tmp_path / "secret.wav").write_bytes(b"not for you")
    return root


def test_read_source_under_a_root_is_read(drop):
    assert read_source((drop / "call.wav").as_uri(), roots=[drop]) == AUDIO
    assert read_source(str(drop / "call.wav"), roots=[str(drop)]) == AUDIO
    # `..` that stays inside the root is fine.
    assert read_source(str(drop / "sub" / ".." / "call.wav"), roots=[drop]) == AUDIO


@pytest.mark.parametrize("as_uri", [False, True])
def test_read_source_escaping_a_root_with_dotdot_refused(drop, as_uri):
    path = drop / ".." / "secret.wav"
    with pytest.raises(AudioError) as info:
        read_source(path.as_uri() if as_uri else str(path), roots=[drop])
    message = str(info.value)
    assert str(path) in message and "outside the allowed folders" in message


def test_read_source_symlink_out_of_a_root_refused(drop):
    link = drop / "link.wav"
    link.symlink_to(drop.parent / "secret.wav")
    (drop / "dir").symlink_to(drop.parent, target_is_directory=True)
    for path in (link, drop / "dir" / "secret.wav"):
        with pytest.raises(AudioError, match="outside the allowed folders") as info:
            read_source(str(path), roots=[drop])
        assert str(path) in str(info.value)
    # A link inside the root to a file inside it is fine.
    (drop / "alias.wav").symlink_to(drop / "call.wav")
    assert read_source(str(drop / "alias.wav"), roots=[drop]) == AUDIO


def test_read_source_root_that_is_a_symlink_and_several_roots(drop, tmp_path):
    (tmp_path / "drop-link").symlink_to(drop, target_is_directory=True)
    other = tmp_path / "other"
    other.mkdir()
    assert read_source(str(drop / "call.wav"), roots=[other, tmp_path / "drop-link"]) == AUDIO
    with pytest.raises(AudioError, match="outside the allowed folders"):
        read_source(str(drop / "call.wav"), roots=[other])
    # A sibling folder whose name starts like the root's is not under it.
    (tmp_path / "drop2").mkdir()
    (tmp_path / "drop2" / "x.wav").write_bytes(AUDIO)
    with pytest.raises(AudioError, match="outside the allowed folders"):
        read_source(str(tmp_path / "drop2" / "x.wav"), roots=[drop])


def test_read_source_without_roots_reads_any_path(drop):
    assert read_source(str(drop / ".." / "secret.wav")) == b"not for you"


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("file:///etc/passwd", "/etc/passwd"),
        ("/etc/passwd", "/etc/passwd"),
        ("etc/passwd", "etc/passwd"),
        (f"ftp://user:{SECRET}@crm.example/a.wav?token={SECRET}", "ftp://crm.example/a.wav"),
        ("s3://bucket/call.wav", "s3://bucket/call.wav"),
    ],
)
def test_read_remote_refuses_anything_but_http(uri, named):
    with pytest.raises(AudioError) as info:
        read_remote(uri)
    message = str(info.value)
    assert message.startswith(f"{named}:") and "only http(s)" in message
    assert SECRET not in message and "user" not in message


def test_read_remote_fetches_through_the_guard(server, monkeypatch):
    with pytest.raises(AudioError, match="non-public address 127.0.0.1"):
        read_remote(server.url("/audio.wav"))
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, "127.0.0.1")
    assert read_remote(server.url("/audio.wav"), headers={"Authorization": "Bearer t"}) == AUDIO
    assert server.headers[0]["Authorization"] == "Bearer t"
    with pytest.raises(AudioError, match="exceeds"):
        read_remote(server.url("/audio.wav"), max_bytes=10)
