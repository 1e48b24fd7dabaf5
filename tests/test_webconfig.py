"""web.yml: checks of the file, and TLS and basic auth over real sockets on 127.0.0.1.

Certificates are made by the openssl command line for each test session: a CA, a server
certificate for 127.0.0.1 and two client certificates.
"""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from mlwatcher_exporter.exposition import start_http_server
from mlwatcher_exporter.configfile import MAX_FILE_BYTES, ConfigError
from mlwatcher_exporter.webconfig import BasicAuth, load_web_config, parse_web_config

ROOT = Path(__file__).resolve().parent.parent


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(name, sans, cwd):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)
    (cwd / f"{name}.ext").write_text(f"subjectAltName={sans}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
            cwd=cwd)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=mlwatcher test CA",
            "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _signed("server", "IP:127.0.0.1,DNS:localhost", directory)
    _signed("prometheus", "DNS:prometheus", directory)
    _signed("intruder", "DNS:intruder", directory)
    return directory


@pytest.fixture
def registry():
    registry = CollectorRegistry()
    Counter("scrapes_seen", "A counter to find in the body.", registry=registry).inc()
    return registry


@pytest.fixture
def web(tmp_path, certs, registry):
    """start(yaml text) -> server with that web.yml (next to copies of the certs)."""
    for name in os.listdir(certs):
        shutil.copy(certs / name, tmp_path / name)
    servers = []

    def start(text):
        path = tmp_path / "web.yml"
        path.write_text(text)
        server = start_http_server(0, registry=registry, web_config=path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


TLS = """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""


def client_context(certs, cert=None, **versions):
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if cert:
        context.load_cert_chain(str(certs / f"{cert}.crt"), str(certs / f"{cert}.key"))
    for key, value in versions.items():
        setattr(context, key, value)
    return context


def fetch(url, context=None, headers=None, method="GET"):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def tls_get(port, context, path="/metrics"):
    """A raw TLS request; raises ssl/OS errors when the server refuses the client."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk


def test_tls_scrape_with_a_verified_server_certificate(web, certs):
    server = web(TLS)
    assert server.url.startswith("https://127.0.0.1:")
    status, headers, body = fetch(server.url, client_context(certs))
    assert status == 200 and b"scrapes_seen_total 1.0" in body
    assert headers["Vary"] == "Accept-Encoding"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to TLS
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass


def test_min_version_refuses_older_clients(web, certs):
    server = web(TLS + "  min_version: TLS13\n")
    old = client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(server.port, old)
    assert tls_get(server.port, client_context(certs)).startswith(b"HTTP/1.1 200 OK")


def test_required_client_certificate(web, certs):
    server = web(TLS + "  client_auth_type: RequireAndVerifyClientCert\n"
                       "  client_ca_file: ca.crt\n")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(server.port, client_context(certs))
    assert tls_get(server.port, client_context(certs, "prometheus")).startswith(
        b"HTTP/1.1 200 OK")


def test_client_allowed_sans(web, certs):
    server = web(TLS + "  client_auth_type: RequireAndVerifyClientCert\n"
                       "  client_ca_file: ca.crt\n  client_allowed_sans: [prometheus]\n")
    assert tls_get(server.port, client_context(certs, "prometheus")).startswith(
        b"HTTP/1.1 200 OK")
    try:
        answer = tls_get(server.port, client_context(certs, "intruder"))
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""


def test_optional_client_certificate(web, certs):
    server = web(TLS + "  client_auth_type: VerifyClientCertIfGiven\n"
                       "  client_ca_file: ca.crt\n")
    assert tls_get(server.port, client_context(certs)).startswith(b"HTTP/1.1 200 OK")
    assert tls_get(server.port, client_context(certs, "prometheus")).startswith(
        b"HTTP/1.1 200 OK")


def test_inline_certificate_and_key(web, certs):
    cert = (certs / "server.crt").read_text().replace("\n", "\n    ")
    key = (certs / "server.key").read_text().replace("\n", "\n    ")
    server = web(f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n")
    assert fetch(server.url, client_context(certs))[0] == 200


def bcrypt_hash(password, cost=4):
    bcrypt = pytest.importorskip("bcrypt")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
            .decode()}


def test_basic_auth_over_tls(web, certs):
    digest = "$2y$" + bcrypt_hash("s3cret")[4:]  # htpasswd writes $2y$
    server = web(TLS + f"basic_auth_users:\n  prometheus: '{digest}'\n"
                       "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    context = client_context(certs)
    status, headers, body = fetch(server.url, context)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert b"scrapes_seen" not in body and headers["X-Frame-Options"] == "deny"
    for user, password in (("prometheus", "wrong"), ("nobody", "s3cret"), ("prometheus", "")):
        assert fetch(server.url, context, basic(user, password))[0] == 401
    assert fetch(server.url, context, {"Authorization": "Basic !!notbase64"})[0] == 401
    assert fetch(server.url, context, {"Authorization": "Bearer abc"})[0] == 401
    status, headers, body = fetch(server.url, context, basic("prometheus", "s3cret"))
    assert status == 200 and b"scrapes_seen_total 1.0" in body
    assert headers["X-Frame-Options"] == "deny"
    landing = server.url.replace("/metrics", "/")
    assert fetch(landing, context)[0] == 401
    status, _, body = fetch(server.url, context, basic("prometheus", "s3cret"), "HEAD")
    assert status == 200 and body == b""


def test_a_good_password_costs_bcrypt_once():
    auth = BasicAuth({"prometheus": bcrypt_hash("pw", cost=10)})
    header = basic("prometheus", "pw")["Authorization"]
    started = time.perf_counter()
    assert auth.check(header)
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert auth.check(header)
    second = time.perf_counter() - started
    assert second < first / 10, (first, second)
    assert not auth.check(basic("prometheus", "other")["Authorization"])


def test_basic_auth_without_bcrypt_says_what_to_install(monkeypatch):
    digest = "$2b$04$" + "a" * 53
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs the bcrypt package: pip install "
                                          r"'mlwatcher-exporter\[web\]'"):
        parse_web_config({"basic_auth_users": {"prometheus": digest}})


def test_tls_half_handshakes_do_not_stop_scrapes(web, certs):
    server = web(TLS)
    hostile = []
    try:
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a cut hello
            hostile.append(sock)
        time.sleep(0.3)
        started = time.monotonic()
        assert fetch(server.url, client_context(certs))[0] == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in hostile:
            sock.close()


@pytest.mark.parametrize("text, message", [
    ("a: &x [1]\nb: *x\n", "aliases"),
    ("basic_auth_users: {}\nbasic_auth_users: {}\n", "basic_auth_users: duplicate key"),
    ("listen: 1\n", "listen: unknown key"),
    ("rate_limit: {interval: 1s, burst: 2}\n", "rate_limit: not supported"),
    (TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites: not supported"),
    (TLS + "  client_auth_type: RequireAnyClientCert\n", "without verification"),
    (TLS + "  client_auth_type: Sometimes\n", "client_auth_type == 'Sometimes', must be"),
    (TLS + "  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file: needed"),
    (TLS + "  client_ca_file: ca.crt\n", "client_auth_type is NoClientCert"),
    (TLS + "  client_allowed_sans: [x]\n", "client_allowed_sans needs"),
    (TLS + "  min_version: TLS14\n", "min_version == 'TLS14', must be one of"),
    (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "above max_version"),
    ("tls_server_config:\n  cert_file: a.crt\n", "key_file: missing"),
    ("tls_server_config: yes\n", "tls_server_config must be a mapping"),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("http_server_config:\n  headers:\n    Server: x\n", "headers.Server: not allowed"),
    ("http_server_config:\n  http2: maybe\n", "http2 == 'maybe', must be a bool"),
    ("- a list\n", "must be a mapping, not list"),
    ("{unclosed\n", "invalid YAML"),
])
def test_bad_files_are_refused_with_their_key(tmp_path, text, message):
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_web_config(path)


def test_every_problem_is_listed_at_once(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  min_version: TLS9\nbasic_auth_users:\n  a: b\n"
                    "extra: 1\n")
    with pytest.raises(ValueError) as caught:
        load_web_config(path)
    text = str(caught.value)
    assert "has 5 problems" in text
    for part in ("min_version == 'TLS9'", "cert_file: missing", "key_file: missing",
                 "basic_auth_users.a", "extra: unknown key"):
        assert part in text


def test_size_limit_and_unreadable_files(tmp_path):
    """The shared loader's bounds and messages (configfile.py), as for every file."""
    path = tmp_path / "web.yml"
    path.write_text("# " + "x" * (MAX_FILE_BYTES + 1) + "\n")
    with pytest.raises(ConfigError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        load_web_config(path)
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        load_web_config(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="cannot read: is a directory"):
        load_web_config(tmp_path)


def test_unloadable_certificate_is_a_value_error(tmp_path, registry):
    (tmp_path / "web.yml").write_text(TLS)
    (tmp_path / "server.crt").write_text("not a certificate")
    (tmp_path / "server.key").write_text("not a key")
    with pytest.raises(ValueError, match="cannot load the certificate and key"):
        start_http_server(0, registry=registry, web_config=tmp_path / "web.yml")


def test_paths_are_relative_to_the_file(tmp_path):
    config = load_web_config(_write(tmp_path / "sub" / "web.yml", TLS))
    assert config.tls.cert_file == str(tmp_path / "sub" / "server.crt")


def test_the_shipped_example_is_valid():
    config = load_web_config(ROOT / "config" / "web.yml")
    assert config.tls is not None and config.tls.min_version == "TLS12"
    assert dict(config.basic_auth_users)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
