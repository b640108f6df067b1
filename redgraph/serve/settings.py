"""A server's limits and switches, and the rule that it listens beyond this machine only with a key."""

from __future__ import annotations

from dataclasses import dataclass

from redgraph.errors import ConfigError, check_whole_number

SERVER_KEY_ENV = "REDGRAPH_API_KEY"  # the server's own bearer key (not a key for OpenAI)


@dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of one server.

    Attributes:
        model_name: the name clients send as ``model`` (default: the loaded model's name).
        api_key: when set, every ``/v1`` request must carry ``Authorization: Bearer <key>``.
        max_body_bytes: largest request body (413 above it).
        max_image_bytes, max_image_pixels: largest image, encoded and decoded.
        allow_remote_images: fetch ``http(s)://`` image URLs (refused by default).
        max_batch: most chat requests decoded together.
        max_pending: most chat requests waiting or decoding; more get 503.
        max_graph_runs: most concurrent graph runs; more get 503.
        default_max_tokens, max_tokens_limit: answer length when unset, and the largest allowed.
        request_timeout_s: a chat request's decoding stops this long after it was queued (504); a
            request whose client disconnects stops at its next step.
        body_timeout_s: a request body must arrive whole this long after its headers, or the
            server answers 408 and closes the connection (a slow or partial upload holds nothing).
        max_connections: most open connections (``redgraph serve`` gives it to uvicorn, which answers
            503 beyond it): with ``max_body_bytes``, what bounds the memory bodies can take.
    """

    model_name: str | None = None
    api_key: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_image_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    allow_remote_images: bool = False
    max_batch: int = 8
    max_pending: int = 32
    max_graph_runs: int = 2
    default_max_tokens: int = 64
    max_tokens_limit: int = 1024
    request_timeout_s: float = 120.0
    body_timeout_s: float = 30.0
    max_connections: int = 128

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_image_bytes", "max_image_pixels", "max_batch", "max_pending",
                     "max_graph_runs", "default_max_tokens", "max_tokens_limit", "max_connections"):
            check_whole_number(name, getattr(self, name))
        for name in ("request_timeout_s", "body_timeout_s"):
            timeout = getattr(self, name)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86_400:
                raise ConfigError(f"{name} must be a number of seconds above 0 and up to 86400, got {timeout!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; pass a real key or leave it unset")


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without a key.

    Raises:
        ConfigError: ``host`` is not a loopback address and no API key is set.
    """
    import ipaddress

    if api_key:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False  # a host name: it may resolve to any interface
    if not loopback:
        raise ConfigError(
            f"refusing to bind {host!r} without an API key: anyone who can reach it could use the model; "
            f"pass --api-key or set {SERVER_KEY_ENV}, or bind 127.0.0.1"
        )
