"""``web.yml``: TLS and basic auth for ``/metrics``, as Prometheus' exporter-toolkit has it.

The file Prometheus users already write for node_exporter and friends works here::

    tls_server_config:
      cert_file: server.crt        # relative paths are relative to web.yml
      key_file: server.key
      min_version: TLS12
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
    basic_auth_users:
      prometheus: $2y$10$...       # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':\\n'
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff

Basic auth needs the optional ``bcrypt`` package (``pip install 'mlwatcher-exporter[web]'``).
Options of exporter-toolkit that Python's ``ssl`` cannot honour as written
(``cipher_suites``, ``curve_preferences``, the client auth types that take a certificate
without verifying it, ``rate_limit``) are refused with a message rather than ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .configfile import ConfigError, check_file
from .httpserver import peer_sans

__all__ = ["WebConfig", "TLSServerConfig", "BasicAuth", "load_web_config", "parse_web_config"]

_BCRYPT = re.compile(r"^\$2[abxy]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_TLS_KEYS = ("cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca",
             "client_auth_type", "client_allowed_sans", "min_version", "max_version",
             "prefer_server_cipher_suites")
_REFUSED_TLS_KEYS = ("cipher_suites", "curve_preferences")
_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
            "X-XSS-Protection", "Strict-Transport-Security")
_INSTALL_HINT = "pip install 'mlwatcher-exporter[web]'"


@dataclass(frozen=True)
class TLSServerConfig:
    """The ``tls_server_config`` section, with paths made absolute."""

    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = field(default=None, repr=False)
    client_ca_file: Optional[str] = None
    client_ca: Optional[str] = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: Tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """A server ``SSLContext`` for this section; raises ValueError on unusable files."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        context.maximum_version = _TLS_VERSIONS[self.max_version]
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            if self.cert is not None:
                # ssl loads a certificate chain from files only: a private temporary one.
                with tempfile.TemporaryDirectory(prefix="mlwatcher-tls-") as directory:
                    cert_path = os.path.join(directory, "cert.pem")
                    key_path = os.path.join(directory, "key.pem")
                    for path, text in ((cert_path, self.cert), (key_path, self.key or "")):
                        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                        with os.fdopen(descriptor, "w") as handle:
                            handle.write(text)
                    context.load_cert_chain(cert_path, key_path)
            else:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            where = "cert/key" if self.cert is not None else f"{self.cert_file}, {self.key_file}"
            raise ValueError(f"tls_server_config: cannot load the certificate and key "
                             f"({where}): {exc}") from None
        if self.client_auth_type != "NoClientCert":
            context.verify_mode = (ssl.CERT_REQUIRED
                                   if self.client_auth_type == "RequireAndVerifyClientCert"
                                   else ssl.CERT_OPTIONAL)
            try:
                if self.client_ca is not None:
                    context.load_verify_locations(cadata=self.client_ca)
                else:
                    context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"tls_server_config.client_ca_file: cannot load "
                                 f"{self.client_ca_file or 'client_ca'}: {exc}") from None
        return context


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes.

    A successful check is remembered (keyed by a SHA-256 of user and password), so a
    scraper pays bcrypt's cost once, not on every scrape; at most one bcrypt runs at a
    time, so a flood of wrong passwords costs one core at most. An unknown user costs
    the same time as a known one.
    """

    _CACHE_SIZE = 256

    def __init__(self, users: Mapping[str, str]) -> None:
        self._bcrypt = _import_bcrypt()
        self._users = {user: digest.encode() for user, digest in users.items()}
        self._dummy = self._bcrypt.hashpw(b"mlwatcher", self._bcrypt.gensalt(10))
        self._good: Dict[bytes, None] = {}
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def check(self, authorization: Optional[str]) -> bool:
        """Whether the header value names a user and its password."""
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        if not colon:
            return False
        user_text = user.decode("utf-8", "replace")
        digest = self._users.get(user_text)
        remembered = hashlib.sha256(user + b"\0" + password + b"\0" + (digest or b"")).digest()
        with self._lock:
            if digest is not None and remembered in self._good:
                return True
        with self._bcrypt_lock:
            ok = self._bcrypt.checkpw(password, digest if digest is not None else self._dummy)
        if not ok or digest is None:
            return False
        with self._lock:
            if len(self._good) >= self._CACHE_SIZE:
                self._good.pop(next(iter(self._good)))
            self._good[remembered] = None
        return True


def _import_bcrypt() -> Any:
    try:
        import bcrypt
    except ImportError:
        raise ImportError(f"basic_auth_users in web.yml needs the bcrypt package: "
                          f"{_INSTALL_HINT}") from None
    return bcrypt


@dataclass(frozen=True)
class WebConfig:
    """A checked ``web.yml``: TLS, basic-auth users, extra response headers."""

    tls: Optional[TLSServerConfig] = None
    basic_auth_users: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    source: Optional[str] = None

    def __hash__(self) -> int:
        return hash((self.tls, self.basic_auth_users, tuple(self.headers.items())))

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """The server's ``SSLContext``, None without ``tls_server_config``."""
        return self.tls.ssl_context() if self.tls is not None else None

    def basic_auth(self) -> Optional[BasicAuth]:
        """The checker of ``basic_auth_users``, None without users."""
        return BasicAuth(dict(self.basic_auth_users)) if self.basic_auth_users else None

    def check_peer(self, sock: ssl.SSLSocket) -> bool:
        """After a TLS handshake: whether the client certificate has an allowed SAN."""
        if self.tls is None or not self.tls.client_allowed_sans:
            return True
        allowed = set(self.tls.client_allowed_sans)
        return any(name in allowed for name in peer_sans(sock.getpeercert()))


def load_web_config(path: Union[str, "os.PathLike[str]"]) -> WebConfig:
    """Read and check a ``web.yml``.

    Relative file names in it are relative to the file's directory. The file is read by
    the loader every configuration file goes through (:mod:`.configfile`: bounded size,
    anchors, aliases and duplicate keys refused), and every problem is reported at once.

    Raises
    ------
    ConfigError
        (a ``ValueError``) Every problem of the file, one per line with its key.
    ImportError
        ``basic_auth_users`` is set and bcrypt is not installed.
    """
    base_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
    return check_file(path, lambda data, source: parse_web_config(data, base_dir, source))


def parse_web_config(data: Any, base_dir: str = ".", source: Optional[str] = None) -> WebConfig:
    """Check the parsed content of a ``web.yml``; see :func:`load_web_config`.

    Examples
    --------
    >>> parse_web_config({"http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    WebConfig(tls=None, headers={'X-Frame-Options': 'deny'}, source=None)
    """
    problems: List[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _report(source, [f"the file must be a mapping, not {type(data).__name__}"])
    known = ("tls_server_config", "basic_auth_users", "http_server_config")
    for key in data:
        if key == "rate_limit":
            problems.append("rate_limit: not supported by mlwatcher-exporter (its server "
                            "bounds connections and timeouts instead); remove it")
        elif key not in known:
            problems.append(f"{key}: unknown key, expected one of {', '.join(known)}")
    tls = _parse_tls(data.get("tls_server_config"), base_dir, problems)
    users = _parse_users(data.get("basic_auth_users"), problems)
    headers = _parse_http(data.get("http_server_config"), problems)
    if problems:
        raise _report(source, problems)
    if users:
        _import_bcrypt()
    return WebConfig(tls, users, headers, source)


def _report(source: Optional[str], problems: List[str]) -> ConfigError:
    return ConfigError(problems, source or "web_config")


def _string(section: Mapping, key: str, prefix: str, problems: List[str]) -> Optional[str]:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{prefix}.{key} == {value!r}, must be a non-empty string")
        return None
    return value


def _parse_tls(section: Any, base_dir: str, problems: List[str]) -> Optional[TLSServerConfig]:
    prefix = "tls_server_config"
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.append(f"{prefix} must be a mapping, not {type(section).__name__}")
        return None
    for key in section:
        if key in _REFUSED_TLS_KEYS:
            problems.append(f"{prefix}.{key}: not supported (Python's ssl names ciphers and "
                            "curves differently); remove it to use OpenSSL's defaults")
        elif key not in _TLS_KEYS:
            problems.append(f"{prefix}.{key}: unknown key, expected one of "
                            f"{', '.join(_TLS_KEYS)}")
    values = {key: _string(section, key, prefix, problems)
              for key in ("cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca")}
    for key in ("cert_file", "key_file", "client_ca_file"):
        name = values[key]
        if name is not None:
            values[key] = os.path.join(base_dir, os.path.expanduser(name))
    for file_key, inline_key in (("cert_file", "cert"), ("key_file", "key"),
                                 ("client_ca_file", "client_ca")):
        if values[file_key] is not None and values[inline_key] is not None:
            problems.append(f"{prefix}: {file_key} and {inline_key} both set, give one")
    has_cert = values["cert_file"] is not None or values["cert"] is not None
    has_key = values["key_file"] is not None or values["key"] is not None
    if not has_cert:
        problems.append(f"{prefix}.cert_file: missing (or cert inline)")
    if not has_key:
        problems.append(f"{prefix}.key_file: missing (or key inline)")
    if (values["cert"] is None) != (values["key"] is None) and has_cert and has_key:
        problems.append(f"{prefix}: cert and key must both be inline or both be files")
    auth = section.get("client_auth_type", "NoClientCert")
    if auth in _UNVERIFIED_CLIENT_AUTH:
        problems.append(f"{prefix}.client_auth_type == {auth!r}: a client certificate taken "
                        "without verification is not supported; use VerifyClientCertIfGiven "
                        "or RequireAndVerifyClientCert with client_ca_file")
    elif auth not in _CLIENT_AUTH:
        problems.append(f"{prefix}.client_auth_type == {auth!r}, must be one of "
                        f"{', '.join(_CLIENT_AUTH)}")
    has_ca = values["client_ca_file"] is not None or values["client_ca"] is not None
    if auth in _CLIENT_AUTH[1:] and not has_ca:
        problems.append(f"{prefix}.client_ca_file: needed with client_auth_type {auth}")
    if auth == "NoClientCert" and has_ca:
        problems.append(f"{prefix}.client_ca_file is set but client_auth_type is "
                        "NoClientCert: set client_auth_type to RequireAndVerifyClientCert")
    sans = section.get("client_allowed_sans", [])
    if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
        problems.append(f"{prefix}.client_allowed_sans == {sans!r}, must be a list of strings")
        sans = []
    elif sans and auth != "RequireAndVerifyClientCert":
        problems.append(f"{prefix}.client_allowed_sans needs client_auth_type "
                        "RequireAndVerifyClientCert")
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = section.get(key, default)
        if value not in _TLS_VERSIONS:
            problems.append(f"{prefix}.{key} == {value!r}, must be one of "
                            f"{', '.join(_TLS_VERSIONS)}")
            value = default
        versions[key] = value
    if _TLS_VERSIONS[versions["min_version"]] > _TLS_VERSIONS[versions["max_version"]]:
        problems.append(f"{prefix}.min_version {versions['min_version']} is above "
                        f"max_version {versions['max_version']}")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.append(f"{prefix}.prefer_server_cipher_suites == {prefer!r}, must be a bool")
        prefer = True
    return TLSServerConfig(
        values["cert_file"], values["key_file"], values["cert"], values["key"],
        values["client_ca_file"], values["client_ca"],
        auth if auth in _CLIENT_AUTH else "NoClientCert", tuple(sans),
        versions["min_version"], versions["max_version"], prefer)


def _parse_users(section: Any, problems: List[str]) -> Tuple[Tuple[str, str], ...]:
    if section is None:
        return ()
    if not isinstance(section, dict):
        problems.append(f"basic_auth_users must be a mapping of user to bcrypt hash, not "
                        f"{type(section).__name__}")
        return ()
    users = []
    for user, digest in section.items():
        if not isinstance(user, str) or not user or ":" in user:
            problems.append(f"basic_auth_users: user {user!r} must be a non-empty string "
                            "without ':'")
        elif not isinstance(digest, str) or not _BCRYPT.match(digest):
            problems.append(f"basic_auth_users.{user}: not a bcrypt hash ($2y$10$ and 53 "
                            "characters; make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        else:
            users.append((user, digest))
    return tuple(users)


def _parse_http(section: Any, problems: List[str]) -> Dict[str, str]:
    prefix = "http_server_config"
    if section is None:
        return {}
    if not isinstance(section, dict):
        problems.append(f"{prefix} must be a mapping, not {type(section).__name__}")
        return {}
    headers: Dict[str, str] = {}
    for key, value in section.items():
        if key == "http2":
            if not isinstance(value, bool):
                problems.append(f"{prefix}.http2 == {value!r}, must be a bool (HTTP/2 is "
                                "not served either way; the key is accepted for "
                                "compatibility)")
        elif key == "headers":
            if not isinstance(value, dict):
                problems.append(f"{prefix}.headers must be a mapping")
                continue
            for name, text in value.items():
                if name not in _HEADERS:
                    problems.append(f"{prefix}.headers.{name}: not allowed, expected one of "
                                    f"{', '.join(_HEADERS)}")
                elif not isinstance(text, str) or "\r" in text or "\n" in text:
                    problems.append(f"{prefix}.headers.{name} == {text!r}, must be a "
                                    "one-line string")
                elif text:
                    headers[name] = text
        else:
            problems.append(f"{prefix}.{key}: unknown key, expected http2 or headers")
    return headers
