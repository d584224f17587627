"""Serve one registry's ``/metrics`` over HTTP(S) (prometheus_client's WSGI app, own thread).

The HTTP sidecar serves ``/metrics`` on its own port; this stand-alone server is the
separate metrics port (``metrics_port``, the one the chart's Service and ServiceMonitor
name), and serves processes without a sidecar (tests). Bind to 127.0.0.1 unless the
site's network plan says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from prometheus_client import CollectorRegistry, start_http_server


class MetricsServer:
    """``/metrics`` of ``registry`` on ``host:port`` (port 0: a free one, see ``port``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path, Path] | None = None,
    ):
        """``tls``: (certificate, key) PEM files; the port then speaks HTTPS only."""
        cert, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
        self._server, self._thread = start_http_server(
            port, addr=host, registry=registry, certfile=cert, keyfile=key
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self.scheme = "https" if tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["MetricsServer"]
