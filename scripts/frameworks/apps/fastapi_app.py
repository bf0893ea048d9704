"""The demo's routes as a FastAPI app on vishnu.starlette, for real servers (uvicorn).

    VISHNU_STORE=redis://… SECRET_KEY=… uvicorn --workers 3 fastapi_app:app

The same routes as flask_app.py; store I/O is awaited on the event loop.
"""
import os

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse

from page import page
from vishnu.session import Superseded
from vishnu.starlette import SessionMiddleware

app = FastAPI()
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("SECRET_KEY", "fastapi demo secret: change me"),
                   store=os.environ.get("VISHNU_STORE", "memory"))


@app.exception_handler(Superseded)
async def superseded(request, exc):
    # A write with an id that a login (in another tab) cycled away: nothing
    # was saved, and no cookie goes out that could log the browser out.
    return PlainTextResponse("conflict: the session changed; retry", 409)


@app.get("/", response_class=HTMLResponse)
async def index(request: Request):
    return page(request.session.get("counter", 0), request.session.get("user"))


@app.get("/public", response_class=PlainTextResponse)
async def public():
    return "public"


@app.get("/counter", response_class=PlainTextResponse)
async def counter(request: Request):
    return str(await request.session.update_value("counter", lambda n: (n or 0) + 1))


@app.post("/login")
async def login(request: Request, user: str = Form("")):
    request.session["user"] = user
    await request.session.cycle_id()
    return RedirectResponse("/", 303)


@app.get("/whoami", response_class=PlainTextResponse)
async def whoami(request: Request):
    user = request.session.get("user")
    if user is None:
        return PlainTextResponse("not logged in", 401)
    return user


@app.post("/logout")
async def logout(request: Request):
    request.session.clear()
    return RedirectResponse("/", 303)
