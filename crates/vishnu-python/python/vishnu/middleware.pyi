from typing import Any, Callable, Iterable
from vishnu.session import Config

class SessionMiddleware:
    app: Callable[..., Iterable[bytes]]
    config: Config
    def __init__(self, app: Callable[..., Iterable[bytes]], config: Config) -> None: ...
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]: ...
