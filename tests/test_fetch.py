"""Fetching recordings from CRM URLs, against a real HTTP server on loopback."""

from __future__ import annotations

import socket
import types
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

import callqa.crm.fetch
from callqa.crm.fetch import MAX_REDIRECTS, fetch_url
from callqa.crm.file_drop import read_source
from callqa.errors import AudioError
from callqa.settings import ALLOW_PRIVATE_URLS_ENV
from tests.fakes import AUDIO, FakeRecordingServer

SECRET = "SECRET-tok-9f8e7d"
PUBLIC_ADDRESS = "93.184.215.14"  # what the guard is told "localhost" resolves to


@pytest.fixture
def server() -> Iterator[FakeRecordingServer]:
    srv = FakeRecordingServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _private_urls_not_allowed_by_env(monkeypatch):
    monkeypatch.delenv(ALLOW_PRIVATE_URLS_ENV, raising=False)


@pytest.fixture
def localhost_looks_public(monkeypatch):
    """The SSRF guard's DNS answer for 'localhost' is a public address (as a CRM host
    would be); the HTTP client still connects to loopback. Only the guard's view of DNS
    is replaced, so every redirect hop to an IP literal is checked for real."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "localhost":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC_ADDRESS, port))
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(
        callqa.crm.fetch,
        "socket",
        types.SimpleNamespace(
            getaddrinfo=getaddrinfo, gaierror=socket.gaierror, IPPROTO_TCP=socket.IPPROTO_TCP
        ),
    )


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


def test_allow_private_fetches_bytes(server):
    assert fetch_url(server.url(f"/audio.wav?token={SECRET}"), allow_private=True) == AUDIO
    # The query string is sent to the server (the CRM needs its token).
    assert server.paths == [f"/audio.wav?token={SECRET}"]


def test_env_variable_allows_private(server, monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, "1")
    assert fetch_url(server.url("/audio.wav")) == AUDIO
    # An explicit argument wins over the environment.
    with pytest.raises(AudioError, match="non-public"):
        fetch_url(server.url("/audio.wav"), allow_private=False)


def test_custom_headers_are_sent(server):
    fetch_url(
        server.url("/audio.wav"), allow_private=True, headers={"Authorization": "Bearer crm-token"}
    )
    assert server.headers[0].get("Authorization") == "Bearer crm-token"


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:99999/a.wav?token={SECRET}",
        f"http://127.0.0.1:abc/a.wav?token={SECRET}",
    ],
)
@pytest.mark.parametrize("allow_private", [True, False])
def test_invalid_port_is_an_audio_error(url, allow_private):
    with pytest.raises(AudioError) as info:
        fetch_url(url, allow_private=allow_private)
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
        fetch_url(url, allow_private=True)


def test_url_without_host_refused():
    with pytest.raises(AudioError, match="no host"):
        fetch_url("http:///recording.wav", allow_private=True)


def test_unresolvable_host_is_an_audio_error():
    with pytest.raises(AudioError, match="cannot resolve host"):
        fetch_url("http://callqa-test.invalid/a.wav")


# --- redirects ----------------------------------------------------------------------


def test_redirect_to_loopback_refused(server, localhost_looks_public):
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


def test_public_host_is_fetched(server, localhost_looks_public):
    """Control for the test above: the same public-looking host is fetched directly."""
    assert fetch_url(server.url("/audio.wav", host="localhost")) == AUDIO


def test_redirect_followed_when_private_allowed(server):
    start = server.url("/redirect?to=/audio.wav")
    assert fetch_url(start, allow_private=True) == AUDIO
    assert server.paths == ["/redirect?to=/audio.wav", "/audio.wav"]


def test_redirect_to_file_scheme_refused(server):
    with pytest.raises(AudioError, match="only http and https"):
        fetch_url(server.url("/redirect?to=file:///etc/passwd"), allow_private=True)


def test_redirect_chain_of_three_is_followed(server):
    assert fetch_url(server.url(f"/chain/{MAX_REDIRECTS}"), allow_private=True) == AUDIO
    assert len(server.paths) == MAX_REDIRECTS + 1


def test_redirect_chain_longer_than_three_refused(server):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"/chain/{MAX_REDIRECTS + 1}?token={SECRET}"), allow_private=True)
    message = str(info.value)
    assert f"more than {MAX_REDIRECTS} redirects" in message
    assert_no_secret(message)
    # It stopped following: the final target was never requested.
    assert len(server.paths) == MAX_REDIRECTS + 1
    assert all(urlsplit(p).path != "/audio.wav" for p in server.paths)


# --- size limits and HTTP errors ----------------------------------------------------


def test_declared_size_over_limit_refused(server):
    with pytest.raises(AudioError) as info:
        fetch_url(
            server.url(f"/audio.wav?token={SECRET}"), allow_private=True, max_bytes=len(AUDIO) - 1
        )
    message = str(info.value)
    assert f"{len(AUDIO)} bytes exceeds the {len(AUDIO) - 1}-byte limit" in message
    assert_no_secret(message)


def test_lying_content_length_refused_before_reading(server):
    with pytest.raises(AudioError, match="exceeds the 1000000-byte limit"):
        fetch_url(server.url("/liar.wav"), allow_private=True, max_bytes=1_000_000)


def test_size_exactly_at_limit_is_fine(server):
    assert fetch_url(server.url("/audio.wav"), allow_private=True, max_bytes=len(AUDIO)) == AUDIO


def test_streamed_size_over_limit_refused_without_content_length(server):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"/stream.wav?token={SECRET}"), allow_private=True, max_bytes=1000)
    message = str(info.value)
    assert "more than 1000 bytes" in message and "download stopped" in message
    assert_no_secret(message)


@pytest.mark.parametrize(("max_bytes", "ok"), [(len(AUDIO), True), (len(AUDIO) - 1, False)])
def test_malformed_content_length_falls_back_to_the_streamed_limit(server, max_bytes, ok):
    url = server.url("/garbled.wav")
    if ok:
        assert fetch_url(url, allow_private=True, max_bytes=max_bytes) == AUDIO
    else:
        with pytest.raises(AudioError, match="download stopped"):
            fetch_url(url, allow_private=True, max_bytes=max_bytes)


def test_streamed_body_within_limit_is_read_whole(server):
    assert fetch_url(server.url("/stream.wav"), allow_private=True) == AUDIO * 4


@pytest.mark.parametrize(("path", "status"), [("/missing.wav", 404), ("/error", 500)])
def test_http_error_status(server, path, status):
    with pytest.raises(AudioError) as info:
        fetch_url(server.url(f"{path}?token={SECRET}"), allow_private=True)
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
        fetch_url(f"http://127.0.0.1:{port}/a.wav?token={SECRET}", allow_private=True)
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
    monkeypatch.setenv(ALLOW_PRIVATE_URLS_ENV, "true")
    assert read_source(server.url("/audio.wav")) == AUDIO
    with pytest.raises(AudioError, match="exceeds"):
        read_source(server.url("/audio.wav"), max_bytes=10)
