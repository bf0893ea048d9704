from typing import Any, Callable, Optional, Union

import flask
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface as _FlaskSessionInterface
from flask.sessions import SessionMixin
from werkzeug.wrappers import Request, Response

from vishnu.backend.config import Base
from vishnu._vishnu import Store

__all__ = ["Session", "SessionInterface", "VishnuSession"]

class VishnuSession(dict[str, Any], SessionMixin):
    accessed: bool
    modified: bool
    def cycle_id(self) -> None: ...
    def update_value(self, key: str, func: Callable[[Any], Any]) -> Any: ...

class SessionInterface(_FlaskSessionInterface):
    serializer: TaggedJSONSerializer
    session_class: type[VishnuSession]
    store: Optional[Union[str, Store, Base]]
    def __init__(self, store: Optional[Union[str, Store, Base]] = None) -> None: ...
    def open_session(self, app: flask.Flask, request: Request) -> Optional[VishnuSession]: ...
    def save_session(self, app: flask.Flask, session: SessionMixin, response: Response) -> None: ...

class Session:
    app: Optional[flask.Flask]
    store: Optional[Union[str, Store, Base]]
    def __init__(self, app: Optional[flask.Flask] = None, store: Optional[Union[str, Store, Base]] = None) -> None: ...
    def init_app(self, app: flask.Flask) -> None: ...
