"""The hardened HTTP server over real loopback sockets: hostile clients, limits, parsing."""

import os
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from mlwatcher_exporter.httpserver import HTTPServer, Request, Response, ServerLimits


@pytest.fixture(autouse=True, scope="module")
def enough_descriptors():
    """Hundreds of client and server sockets live in this one process: raise the soft
    limit on file descriptors (up to the hard limit) for the module."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def hello(request: Request) -> Response:
    return Response(200, [("Content-Type", "text/plain")], f"{request.method} {request.target}\n"
                    .encode())


@pytest.fixture
def serve():
    servers = []

    def start(handler=hello, **limits):
        server = HTTPServer("127.0.0.1", 0, handler, ServerLimits(**limits)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def connect(server, timeout=5.0):
    sock = socket.create_connection(server.server_address[:2], timeout=timeout)
    return sock


def read_all(sock, limit=1 << 20):
    """Everything until the server closes (or the socket's timeout)."""
    chunks = []
    try:
        while sum(map(len, chunks)) < limit:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except socket.timeout:
        pass
    return b"".join(chunks)


def read_response(sock):
    """One response with a Content-Length body, from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head.decode("latin-1"), body


def exchange(server, data, timeout=5.0):
    with connect(server, timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def closed_within(sock, seconds):
    """Whether the server closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_get_and_keep_alive(serve):
    server = serve()
    with connect(server) as sock:
        for path in ("/a", "/b"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, body = read_response(sock)
            assert head.startswith("HTTP/1.1 200 OK") and body == f"GET {path}\n".encode()
            assert "Connection: close" not in head


def test_pipelined_requests_are_answered_in_order(serve):
    server = serve()
    with connect(server) as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        data = read_all(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.index(b"GET /1") < data.index(b"GET /2")


def test_http10_closes_unless_keep_alive(serve):
    server = serve()
    assert b"Connection: close" in exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, _ = read_response(sock)
        assert "Connection: keep-alive" in head


def test_head_has_no_body_but_its_length(serve):
    server = serve()
    data = exchange(server, b"HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 8" in head and body == b""


@pytest.mark.parametrize("request_bytes", [
    b"GET /\r\n",                       # HTTP/0.9
    b"GET / HTTP/1.1 extra\r\n\r\n",     # four words
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",  # TLS hello
    b"G\xc3\xa9T / HTTP/1.1\r\n\r\n",   # method not a token
    b"GET / HTTX/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nbad name: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
])
def test_garbage_gets_400_and_close(serve, request_bytes):
    server = serve()
    data = exchange(server, request_bytes)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in data


def test_a_tls_hello_without_line_end_is_closed_by_the_request_timeout(serve):
    server = serve(request_timeout=0.5)
    with connect(server) as sock:
        sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40))
        assert closed_within(sock, 3.0)


def test_http2_preface_gets_505(serve):
    data = exchange(serve(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 505 ")


def test_oversized_head_gets_431(serve):
    server = serve(max_request_bytes=1024)
    data = exchange(server, b"GET / HTTP/1.1\r\nX: " + b"a" * 4000 + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431 ")
    data = exchange(server, b"GET /" + b"a" * 4000)
    assert data.startswith(b"HTTP/1.1 414 ")


def test_a_request_with_a_body_is_answered_then_closed(serve):
    data = exchange(serve(), b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data


def test_handler_failure_is_500(serve):
    def broken(request):
        raise RuntimeError("boom")

    data = exchange(serve(broken), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")


def test_half_written_request_times_out(serve):
    server = serve(request_timeout=0.5)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert closed_within(sock, 3.0)
        assert 0.4 < time.monotonic() - started < 2.0


def test_silent_connection_times_out(serve):
    server = serve(request_timeout=0.5)
    with connect(server) as sock:
        assert closed_within(sock, 3.0)


def test_idle_keep_alive_times_out_and_slow_bytes_do_not_extend_the_request(serve):
    server = serve(idle_timeout=0.6, request_timeout=1.0)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(sock)
        assert closed_within(sock, 3.0)
    with connect(server) as sock:  # one byte every 0.2 s: still one request deadline
        started = time.monotonic()
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" * 10:
                sock.send(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 2.5


def test_a_client_that_does_not_read_is_dropped_by_the_write_timeout(serve):
    big = Response(200, [], b"x" * (64 << 20))
    server = serve(lambda request: big, write_timeout=0.5)
    with connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.5)
        deadline = time.monotonic() + 5
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.connections == 0


def test_beyond_max_connections_the_least_active_is_closed(serve):
    server = serve(max_connections=4)
    idle = [connect(server) for _ in range(4)]
    time.sleep(0.2)
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 OK")
    assert closed_within(idle[0], 2.0)
    assert server.connections <= 4 and server.evicted >= 1
    for sock in idle:
        sock.close()


def test_ipv6_loopback(serve):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        server = HTTPServer("::1", 0, hello).start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        with socket.create_connection(("::1", server.server_address[1]), timeout=5) as sock:
            sock.sendall(b"GET /six HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            assert read_all(sock).endswith(b"GET /six\n")
    finally:
        server.shutdown()


def test_limits_are_checked():
    with pytest.raises(ValueError, match=r"request_timeout == 0, must be > 0"):
        ServerLimits(request_timeout=0)
    with pytest.raises(TypeError, match=r"max_connections == 1.5, must be an int"):
        ServerLimits(max_connections=1.5)
    with pytest.raises(ValueError, match=r"workers == 0, must be >= 1"):
        ServerLimits(workers=0)


def timed_scrape(server):
    started = time.monotonic()
    with connect(server, timeout=5.0) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_all(sock)
    return data, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("max_connections", [64, 512])
def test_hundreds_of_hostile_clients_cost_no_cpu_and_scrapes_answer(serve, max_connections):
    server = serve(max_connections=max_connections)
    threads_before = threading.active_count()
    hostile = []
    try:
        for i in range(300):
            sock = connect(server)
            if i % 3 == 1:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slo")
            elif i % 3 == 2:
                sock.sendall(b"GE")
            hostile.append(sock)
        time.sleep(0.5)
        held = server.connections
        assert held == min(300, max_connections)
        cpu_before, wall_before = time.process_time(), time.monotonic()
        latencies = []
        for _ in range(6):
            data, seconds = timed_scrape(server)
            assert data.startswith(b"HTTP/1.1 200 OK"), data[:100]
            latencies.append(seconds)
            time.sleep(0.5)
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        print(f"max_connections={max_connections}: {held} held, scrape latency max "
              f"{max(latencies) * 1000:.1f} ms, process CPU {cpu:.3f} s over {wall:.1f} s")
        assert max(latencies) < 1.0
        assert cpu < 0.1 * wall  # the whole process, this test's own scrapes included
        assert threading.active_count() <= threads_before + 3  # the loop and its workers
    finally:
        for sock in hostile:
            sock.close()


_SERVER_WITH_FEW_DESCRIPTORS = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from prometheus_client import CollectorRegistry, Counter
from mlwatcher_exporter.exposition import start_http_server
registry = CollectorRegistry()
Counter("alive", "Alive.", registry=registry).inc()
server = start_http_server(0, registry=registry)
print(server.port, flush=True)
time.sleep(float(sys.argv[1]))
"""


def process_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_out_of_descriptors_the_server_neither_spins_nor_stops_answering():
    """The issue's failure: with 48 descriptors, 200 idle clients exhausted them and the
    old server spun a core. Now the least active connection is closed to make room."""
    child = subprocess.Popen([sys.executable, "-c", _SERVER_WITH_FEW_DESCRIPTORS, "30"],
                             stdout=subprocess.PIPE, text=True)
    hostile = []
    try:
        port = int(child.stdout.readline())
        for _ in range(200):
            hostile.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.0)
        cpu_before, wall_before = process_cpu_seconds(child.pid), time.monotonic()
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = read_all(sock)
            assert data.startswith(b"HTTP/1.1 200 OK") and b"alive_total 1.0" in data
            time.sleep(0.5)
        cpu = process_cpu_seconds(child.pid) - cpu_before
        wall = time.monotonic() - wall_before
        assert cpu < 0.2 * wall, f"server used {cpu:.2f} s CPU in {wall:.1f} s"
    finally:
        for sock in hostile:
            sock.close()
        child.kill()
        child.wait()


# ---------------------------------------------------------------- request bodies

def echo_length(request: Request) -> Response:
    return Response(200, [("Content-Type", "text/plain")],
                    f"{request.method} {len(request.body)} {request.body[:8]!r}\n".encode())


def test_a_body_is_read_whole_and_the_connection_kept(serve):
    server = serve(echo_length, max_body_bytes=1 << 20)
    body = bytes(range(256)) * 1000
    with connect(server) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 7000):  # in many segments
            sock.sendall(body[start:start + 7000])
        head, answer = read_response(sock)
        assert head.startswith("HTTP/1.1 200 ") and "Connection: close" not in head
        assert answer == f"POST {len(body)} {body[:8]!r}\n".encode()
        # a pipelined pair, each with a body (both answers may come in one segment)
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST / HTTP/1.1\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\nxy")
        data = read_all(sock)
    first, second = data.split(b"HTTP/1.1 200 ")[1:]
    assert first.endswith(b"\r\n\r\nPOST 3 b'abc'\n") and second.endswith(b"POST 2 b'xy'\n")


def test_a_body_over_the_limit_gets_413_before_it_is_sent(serve):
    server = serve(echo_length, max_body_bytes=1000)
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in data
    assert b"limit is 1000" in data


def test_chunked_bodies_are_refused_with_411(serve):
    data = exchange(serve(echo_length, max_body_bytes=1000),
                    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 411 ") and b"Content-Length" in data


def test_a_slow_body_gets_408_at_the_body_timeout(serve):
    server = serve(echo_length, max_body_bytes=1000, body_timeout=0.5)
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        for _ in range(5):  # trickling bytes do not extend the deadline
            sock.sendall(b"a")
            time.sleep(0.05)
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert 0.4 < time.monotonic() - started < 2.5


def test_expect_100_continue_is_answered(serve):
    server = serve(echo_length, max_body_bytes=1000)
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        assert read_response(sock)[1] == b"POST 4 b'data'\n"


def test_bodies_in_flight_are_bounded_then_503(serve):
    server = serve(echo_length, max_body_bytes=1000, max_pending_body_bytes=1500)
    with connect(server) as first, connect(server) as second:
        first.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\npartial")
        time.sleep(0.2)
        second.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
        data = read_all(second)
        assert data.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in data
        first.sendall(b"a" * 993)
        assert read_response(first)[1].startswith(b"POST 1000 ")
    with connect(server) as third:  # the first body's bytes were released
        third.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000)
        assert read_response(third)[1].startswith(b"POST 1000 ")
    assert server.pending_body_bytes == 0


def test_limits_of_bodies_are_checked():
    with pytest.raises(ValueError, match="max_pending_body_bytes == 10, must be >= "):
        ServerLimits(max_body_bytes=100, max_pending_body_bytes=10)
    with pytest.raises(TypeError, match="body_timeout == 'x'"):
        ServerLimits(body_timeout="x")
