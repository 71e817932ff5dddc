"""An HTTP proxy that waits a fixed time before forwarding each request: a local S3 server
with the first-byte latency of a real object store (~20 ms a request).

    proxy = ProxyProcess("http://127.0.0.1:PORT", delay=0.020)   # its own process
    os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
    ...
    proxy.stop()

    python -m bench.delay_proxy http://127.0.0.1:PORT 0.020 [LOG]   # prints its endpoint

Every request (scandb's boto3 client and DuckDB's httpfs alike) waits ``delay`` seconds,
then goes to the server on a kept connection, one per client connection; the response is
streamed back as it arrives. Threaded: requests in flight at once wait at once, as they
would on a real store. ``requests`` counts what went through, so a benchmark can check
that its traffic did; given a ``log`` file, each request is a line of it (when it arrived
and when its response ended, seconds since the proxy started; method; path and query;
status; body bytes each way), to see which requests are in series. Run in a process of its own (``ProxyProcess``), its threads share no
GIL with the benchmark's Python, which would otherwise add its own waits.
"""

from __future__ import annotations

import http.client
import http.server
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "expect"}
"""Headers of one connection, not of the request: not forwarded (``Expect: 100-continue``
is answered here, by ``BaseHTTPRequestHandler``)."""

CHUNK = 1 << 16
COUNT_PATH = "/_delay_proxy/requests"
"""Answered by the proxy itself, undelayed and uncounted: how many requests it forwarded."""


class DelayProxy:
    """A proxy to ``upstream`` (``http://host:port``) on 127.0.0.1 at a free port."""

    def __init__(self, upstream: str, delay: float, log: str | None = None):
        parsed = urllib.parse.urlsplit(upstream)
        self.delay = delay
        self.started = time.perf_counter()
        self._log = open(log, "a", buffering=1) if log else None
        self.requests = 0
        self._count = threading.Lock()
        proxy = self

        class Handler(_Forwarding):
            host, port = parsed.hostname, parsed.port or 80

            def count(self):
                return proxy.requests

            def counted(self):
                with proxy._count:
                    proxy.requests += 1
                time.sleep(proxy.delay)

            def logged(self, line):
                if proxy._log is not None:
                    with proxy._count:
                        proxy._log.write(line + "\n")

            def now(self):
                return time.perf_counter() - proxy.started

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="delay-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyProcess:
    """``DelayProxy`` in a child process: ``endpoint``, ``requests`` (asked of it), ``stop``."""

    def __init__(self, upstream: str, delay: float, log: str | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "bench.delay_proxy", upstream, str(delay),
                                         *([log] if log else [])],
                                        stdout=subprocess.PIPE, text=True)
        self.endpoint = self.process.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            self.stop()
            raise RuntimeError("the delay proxy did not start")

    @property
    def requests(self) -> int:
        with urllib.request.urlopen(self.endpoint + COUNT_PATH, timeout=10) as answer:
            return int(answer.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class _Forwarding(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the client, as S3 clients expect
    host: str
    port: int

    def counted(self) -> None:
        """Count and delay one request (set by ``DelayProxy``)."""

    def count(self) -> int:
        """The requests forwarded so far (set by ``DelayProxy``)."""
        return 0

    def logged(self, line: str) -> None:
        """Write one line of the request log (set by ``DelayProxy``)."""

    def now(self) -> float:
        return 0.0

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass

    def _forward(self) -> None:
        if self.path == COUNT_PATH:
            answer = str(self.count()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        arrived = self.now()
        self.counted()
        body = self._request_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        upstream = self._upstream()
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            upstream.close()  # a kept connection the server closed: once more on a new one
            self._connection = None
            upstream = self._upstream()
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
        sent = self._relay(response)
        self.logged(f"{arrived:.4f} {self.now():.4f} {self.command} {self.path} {response.status} "
                    f"{len(body or b'')} {sent}")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def _upstream(self) -> http.client.HTTPConnection:
        if getattr(self, "_connection", None) is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        return self._connection

    def _request_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _relay(self, response: http.client.HTTPResponse) -> int:
        """The server's response, streamed: with its length when it gave one, else read
        whole; returns the body's bytes."""
        length = response.getheader("Content-Length")
        body = None if length is not None or self.command == "HEAD" else response.read()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", length if body is None and length is not None else str(len(body or b"")))
        self.end_headers()
        if body is not None:
            self.wfile.write(body)
            return len(body)
        sent = 0
        while chunk := response.read(CHUNK):
            self.wfile.write(chunk)
            sent += len(chunk)
        return sent


if __name__ == "__main__":
    running = DelayProxy(sys.argv[1], float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    print(running.endpoint, flush=True)
    running._thread.join()
