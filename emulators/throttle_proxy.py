"""An HTTP proxy in front of moto that behaves like Cognito under load: quotas, throttles and latency.

moto never throttles and answers in a millisecond, so on moto alone a quota-aware extractor and a naive one look
the same. This proxy puts back what matters for the extract stage:

- **Quota categories** (cognito-and-auth0-facts.md): each operation, found in the ``X-Amz-Target`` header, draws
  from its category's token bucket (UserList 30 RPS for ListUsers and ListUsersInGroup, UserRead 120, …; ListGroups
  and the app-client reads also have a 5 RPS per-pool bucket). An empty bucket answers **at once** with a real
  ``TooManyRequestsException`` (HTTP 400, the JSON error body boto3 parses), as Cognito does: nothing is queued.
  Operations outside the table (setup calls) pass unmetered.
- **Bucket shape (an assumption; AWS does not document it):** refilled at the quota's rate, holding at most
  ``burst_s`` seconds of quota (default 1 s: a caller idle for a second may send one second's worth at once).
- **Latency:** every forwarded request takes ``latency_ms ± jitter_ms`` in total (default 150 ± 30 ms, uniform),
  our assumption for a ListUsers round trip carrying a 60-user page from a client in the pool's Region. moto's
  own processing time counts toward it (the proxy pads up to the sampled latency).
- **Faults:** :meth:`ThrottlingProxy.fail_operation` fails the n-th and later calls of an operation with a 5xx, so a
  test can make a task die at page k through the real network path.
- **Callers:** a boto3 client created with ``Config(user_agent_extra="app/<name>")`` is counted separately, so a
  benchmark can tell the throttles a simulated production app suffered from ours.
- **Admin:** ``GET /_proxy/stats`` and ``POST /_proxy/reset`` (counts, faults and buckets), for a proxy running in
  its own process: ``python -m emulators.throttle_proxy --upstream http://127.0.0.1:5055 --quota UserList=5``.

The proxy shares no code with the pipeline's own rate limiter on purpose: a bug in one must not hide in the other.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from emulators.ports import ensure_port_free, free_port

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
ADMIN_PREFIX = "/_proxy"
_CALLER = re.compile(r"\bapp/([\w.:-]+)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "server", "date"}


@dataclass(frozen=True)
class Quota:
    rps: float
    operations: tuple[str, ...]
    per_pool_rps: float | None = None


# Cognito user pools' request-rate quotas per account and Region (the Cognito developer guide's "Quotas" page).
COGNITO_QUOTAS: dict[str, Quota] = {
    "UserList": Quota(30, ("ListUsers", "ListUsersInGroup")),
    "UserRead": Quota(120, ("AdminGetUser",)),
    "UserResourceRead": Quota(50, ("AdminListGroupsForUser",)),
    "UserPoolResourceRead": Quota(20, ("ListGroups",), per_pool_rps=5),
    "UserPoolRead": Quota(15, ("DescribeUserPool",)),
    "UserPoolClientRead": Quota(15, ("ListUserPoolClients", "DescribeUserPoolClient"), per_pool_rps=5),
}


class _Bucket:
    """Token bucket without waiting: a request either finds a token now or is throttled."""

    def __init__(self, rps: float, burst_s: float) -> None:
        self.rps = rps
        self.capacity = max(1.0, rps * burst_s)
        self.tokens = self.capacity
        self.last = time.monotonic()

    def refill(self, now: float) -> None:
        if now > self.last:  # a bucket created after ``now`` was read must not go negative
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rps)
            self.last = now


@dataclass
class _Fault:
    operation: str
    after: int
    times: int | None
    status: int
    code: str
    seen: int = 0
    fired: int = 0


class ThrottlingProxy:
    """``with ThrottlingProxy(moto.url, quotas={"UserList": 5}) as proxy: boto3 endpoint_url=proxy.url``."""

    def __init__(
        self,
        upstream_url: str,
        *,
        quotas: Mapping[str, float] | None = None,
        burst_s: float = 1.0,
        latency_ms: float = 150.0,
        jitter_ms: float = 30.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        unknown = set(quotas or {}) - set(COGNITO_QUOTAS)
        if unknown:
            raise ValueError(f"unknown quota categories {sorted(unknown)}; known: {sorted(COGNITO_QUOTAS)}")
        if latency_ms < 0 or jitter_ms < 0 or jitter_ms > latency_ms:
            raise ValueError(f"need 0 <= jitter_ms <= latency_ms, got latency {latency_ms}, jitter {jitter_ms}")
        if burst_s <= 0:
            raise ValueError(f"burst_s must be > 0, got {burst_s}")
        self.upstream_url = upstream_url.rstrip("/")
        self.host = host
        self.port = port or free_port(host)
        self.latency_s = latency_ms / 1000
        self.jitter_s = jitter_ms / 1000
        self.burst_s = burst_s
        self._rates = {name: (quotas or {}).get(name, q.rps) for name, q in COGNITO_QUOTAS.items()}
        self._category = {op: name for name, q in COGNITO_QUOTAS.items() for op in q.operations}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._faults: list[_Fault] = []
        self._counts: Counter[tuple[str, str, str]] = Counter()  # (what, key, outcome) -> n
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThrottlingProxy:
        ensure_port_free(self.host, self.port, "Cognito throttling proxy")
        self._http = httpx.Client(base_url=self.upstream_url, timeout=60)
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> ThrottlingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control -----------------------------------------------------------------------------------------------

    def set_quota(self, category: str, rps: float) -> None:
        if category not in COGNITO_QUOTAS:
            raise ValueError(f"unknown quota category {category!r}")
        with self._lock:
            self._rates[category] = rps
            for key in [k for k in self._buckets if k[0] == category]:
                del self._buckets[key]

    def fail_operation(
        self,
        operation: str,
        *,
        after: int = 0,
        times: int | None = None,
        status: int = 500,
        code: str = "InternalErrorException",
    ) -> None:
        """Let ``after`` calls of ``operation`` through, then fail the next ``times`` (None: all until cleared)."""
        with self._lock:
            self._faults.append(_Fault(operation, after, times, status, code))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def stats(self) -> dict[str, Any]:
        """Counts of forwarded, throttled and failed requests by category, operation and caller."""
        with self._lock:
            counts = dict(self._counts)
        out: dict[str, Any] = {"category": {}, "operation": {}, "caller": {}}
        for (what, key, outcome), n in counts.items():
            out[what].setdefault(key, {"forwarded": 0, "throttled": 0, "failed": 0})[outcome] = n
        return out

    def throttled(self, *, caller: str | None = None, category: str | None = None) -> int:
        if (caller is None) == (category is None):
            raise ValueError("pass exactly one of caller= or category=")
        what, key = ("caller", caller) if caller is not None else ("category", category)
        with self._lock:
            return self._counts[(what, str(key), "throttled")]

    def reset_stats(self) -> None:
        with self._lock:
            self._counts.clear()

    def reset(self) -> None:
        """Counts, faults and buckets back to the start (a full bucket per category)."""
        with self._lock:
            self._counts.clear()
            self._faults.clear()
            self._buckets.clear()

    # --- request path ------------------------------------------------------------------------------------------

    def _admit(self, operation: str, pool_id: str | None) -> bool:
        category = self._category.get(operation)
        if category is None:
            return True
        quota = COGNITO_QUOTAS[category]
        now = time.monotonic()
        with self._lock:
            keys = [(category, "*", self._rates[category])]
            if quota.per_pool_rps is not None and pool_id:
                keys.append((category, pool_id, min(quota.per_pool_rps, self._rates[category])))
            buckets = []
            for cat, scope, rps in keys:
                bucket = self._buckets.get((cat, scope))
                if bucket is None:
                    bucket = self._buckets[(cat, scope)] = _Bucket(rps, self.burst_s)
                buckets.append(bucket)
            # Both buckets must have a token; take from neither unless both do.
            for bucket in buckets:
                bucket.refill(now)
            if all(b.tokens >= 1 for b in buckets):
                for bucket in buckets:
                    bucket.tokens -= 1
                return True
            return False

    def _fault_for(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation != operation:
                    continue
                fault.seen += 1
                if fault.seen > fault.after and (fault.times is None or fault.fired < fault.times):
                    fault.fired += 1
                    return fault
        return None

    def _count(self, operation: str, caller: str, outcome: str) -> None:
        category = self._category.get(operation, "unmetered")
        with self._lock:
            self._counts[("category", category, outcome)] += 1
            self._counts[("operation", operation or "?", outcome)] += 1
            self._counts[("caller", caller, outcome)] += 1

    def _sample_latency(self) -> float:
        with self._lock:
            return self._rng.uniform(self.latency_s - self.jitter_s, self.latency_s + self.jitter_s)

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = headers.get("X-Amz-Target", headers.get("x-amz-target", ""))
        operation = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
        match = _CALLER.search(headers.get("User-Agent", headers.get("user-agent", "")))
        caller = match.group(1) if match else "unknown"
        pool_id = None
        if operation and body:
            try:
                pool_id = json.loads(body).get("UserPoolId")
            except (ValueError, AttributeError):
                pool_id = None

        if not self._admit(operation, pool_id):
            self._count(operation, caller, "throttled")
            return _error(400, "TooManyRequestsException", "Too many requests")
        fault = self._fault_for(operation) if operation else None
        if fault is not None:
            self._count(operation, caller, "failed")
            return _error(fault.status, fault.code, f"Injected fault for {operation} (call {fault.seen})")

        deadline = time.monotonic() + self._sample_latency()
        assert self._http is not None
        forward = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "content-length")}
        upstream = self._http.request(method, path, headers=forward, content=body)
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._count(operation, caller, "forwarded")
        out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP]
        return upstream.status_code, out_headers, upstream.content


def _error(status: int, code: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    request_id = str(uuid.uuid4())
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("x-amzn-RequestId", request_id),
        ("x-amzn-ErrorType", f"{code}:"),
    ]
    return status, headers, body


def _handler_for(proxy: ThrottlingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith(ADMIN_PREFIX):
                self._admin()
                return
            try:
                status, headers, payload = proxy.handle(self.command, self.path, dict(self.headers.items()), body)
            except httpx.HTTPError as exc:
                status, headers, payload = _error(502, "ProxyUpstreamError", f"moto unreachable: {type(exc).__name__}")
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _admin(self) -> None:
            if self.command == "GET" and self.path == f"{ADMIN_PREFIX}/stats":
                status, payload = 200, json.dumps(proxy.stats()).encode()
            elif self.command == "POST" and self.path == f"{ADMIN_PREFIX}/reset":
                proxy.reset()
                status, payload = 200, b"{}"
            else:
                status, payload = 404, json.dumps({"error": f"no admin route {self.command} {self.path}"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _relay

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Run the proxy in its own process (as a benchmark does, so it never competes with the client for the GIL)."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="moto's URL")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--jitter-ms", type=float, default=30.0)
    parser.add_argument("--burst-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quota", action="append", default=[], metavar="CATEGORY=RPS", help="e.g. UserList=5")
    args = parser.parse_args(argv)
    quotas: dict[str, float] = {}
    for item in args.quota:
        name, _, rps = item.partition("=")
        try:
            quotas[name] = float(rps)
        except ValueError:
            parser.error(f"--quota wants CATEGORY=RPS, got {item!r}")
    try:
        proxy = ThrottlingProxy(
            args.upstream,
            quotas=quotas,
            burst_s=args.burst_s,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            seed=args.seed,
            port=args.port,
        ).start()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(json.dumps({"url": proxy.url, "admin": proxy.url + ADMIN_PREFIX}), flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
