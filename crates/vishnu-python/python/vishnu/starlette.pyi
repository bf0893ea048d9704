from typing import Any, Callable, Iterable, Literal, Optional, Union

from starlette.types import ASGIApp, Receive, Scope, Send

from vishnu.backend.config import Base
from vishnu._vishnu import Store

__all__ = ["Session", "SessionMiddleware"]

class Session(dict[str, Any]):
    accessed: bool
    modified: bool
    def mark_accessed(self) -> None: ...
    def mark_modified(self) -> None: ...
    def pop(self, key: str, *args: Any) -> Any: ...
    def setdefault(self, key: str, default: Any = None) -> Any: ...
    def update(self, *args: Any, **kwargs: Any) -> None: ...
    async def cycle_id(self) -> None: ...
    async def update_value(self, key: str, func: Callable[[Any], Any]) -> Any: ...
    async def terminate(self) -> None: ...

class SessionMiddleware:
    app: ASGIApp
    session_cookie: str
    max_age: Optional[int]
    path: str
    security_flags: str
    def __init__(
        self,
        app: ASGIApp,
        secret_key: Any,
        session_cookie: str = "session",
        max_age: Optional[int] = 1209600,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: Optional[str] = None,
        partitioned: bool = False,
        store: Union[str, Store, Base] = "cookie",
        fallback_secret_keys: Iterable[Any] = (),
    ) -> None: ...
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...
