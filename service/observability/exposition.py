"""Serve one registry's ``/metrics`` over HTTP (prometheus_client's WSGI app, own thread).

The service mounts ``prometheus_client.make_wsgi_app(metrics.registry)`` wherever its HTTP
front end wants it; this stand-alone server is for processes without one (the DICOM
gateway alone, tests). Bind to 127.0.0.1 unless the site's network plan says otherwise.
"""

from __future__ import annotations

from types import TracebackType

from prometheus_client import CollectorRegistry, start_http_server


class MetricsServer:
    """``/metrics`` of ``registry`` on ``host:port`` (port 0: a free one, see ``port``)."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0):
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port: int = self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

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
