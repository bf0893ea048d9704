"""The WSGI middleware (the original's ``vishnu.middleware``)."""
import logging
import sys

import vishnu
from vishnu.session import Session, SessionError, Superseded

log = logging.getLogger("vishnu")

__all__ = ["SessionMiddleware"]


_CONFLICT_BODY = b"Conflict: the session changed; retry"


def _conflict(start_response, exc_info=None):
    """409 without a cookie of ours: the request's id was cycled away (a login)."""
    start_response("409 Conflict", [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(_CONFLICT_BODY)))], exc_info)
    return [_CONFLICT_BODY]


def _status_code(status):
    try:
        return int(str(status).split(" ", 1)[0])
    except ValueError:
        return 500


class SessionMiddleware(object):
    """Gives every request a session, available through ``vishnu.get_session()``.

    The Set-Cookie header is added when the application calls
    ``start_response``; changes made afterwards, while the body streams, are
    saved when the response is closed. A store failure while saving turns the
    response into an empty 500. A request whose session id another request
    cycled away (a login) within ``cycle_grace`` gets a 409 without any cookie
    of ours, when the application raises :class:`vishnu.session.Superseded`
    or a save at the end of the request fails with it. Any other exception
    from the application propagates unchanged and leaves no session behind.
    """

    def __init__(self, app, config):
        self.app = app
        self.config = config

    def __call__(self, environ, start_response):
        engine = self.config._get_engine()
        session = Session(environ, self.config, _native=engine.begin(environ.get("HTTP_COOKIE")))
        state = {"status": None, "failed": False}

        def session_start_response(status, headers, exc_info=None):
            code = _status_code(status)
            state["status"] = code
            try:
                cookie = session._native.finish(code)
            except Superseded:
                log.info("vishnu: a write with a session id cycled away by another request: answering 409")
                state["failed"] = True
                return start_response(
                    "409 Conflict",
                    [("Content-Type", "text/plain"), ("Content-Length", "0")],
                    exc_info,
                )
            except SessionError as e:
                log.error("vishnu: session could not be saved, answering 500: %s", e)
                state["failed"] = True
                return start_response(
                    "500 Internal Server Error",
                    [("Content-Type", "text/plain"), ("Content-Length", "0")],
                    exc_info,
                )
            headers = list(headers)
            if cookie:
                headers.append(("Set-Cookie", cookie))
            return start_response(status, headers, exc_info)

        token = vishnu._current.set(session)
        try:
            result = self.app(environ, session_start_response)
        except Superseded:
            # The engine sends no cookie for a superseded id: nothing to finish.
            log.info("vishnu: a write with a session id cycled away by another request: answering 409")
            return _conflict(start_response, sys.exc_info())
        finally:
            vishnu._current.reset(token)
        return _Response(result, session, state)


class _Response(object):
    """Wraps the application's iterable: the session stays current while the
    body is produced, and late changes are saved on close()."""

    def __init__(self, result, session, state):
        self._result = result
        self._iter = None
        self._session = session
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._state["failed"]:
            raise StopIteration
        token = vishnu._current.set(self._session)
        try:
            if self._iter is None:
                self._iter = iter(self._result)
            chunk = next(self._iter)
        finally:
            vishnu._current.reset(token)
        if self._state["failed"]:
            return b""
        return chunk

    next = __next__

    def close(self):
        token = vishnu._current.set(self._session)
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
            status = self._state["status"]
            if status is not None and not self._state["failed"] and self._session.needs_save:
                try:
                    cookie = self._session._native.finish(status)
                except SessionError as e:
                    log.error("vishnu: changes made while streaming could not be saved: %s", e)
                else:
                    if cookie:
                        log.warning("vishnu: the session needed a new cookie after the headers were sent; "
                                    "save() before start_response to send it")
        finally:
            vishnu._current.reset(token)
