"""The demo's routes as a one-file Django project on vishnu.django, for real servers (gunicorn).

    VISHNU_STORE=redis://… SECRET_KEY=… gunicorn -w 3 django_app:application

The same routes as flask_app.py, under Django's own SessionMiddleware with
SESSION_ENGINE = "vishnu.django".
"""
import os

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from page import page
from vishnu.session import Superseded

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("SECRET_KEY", "django demo secret: change me"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    INSTALLED_APPS=["django.contrib.sessions"],
    DATABASES={},
    SESSION_ENGINE="vishnu.django",
    VISHNU_STORE=os.environ.get("VISHNU_STORE", "memory"),
)
django.setup()


def text(body, status=200):
    return HttpResponse(body, status=status, content_type="text/plain")


@require_GET
def index(request):
    return HttpResponse(page(request.session.get("counter", 0), request.session.get("user")))


@require_GET
def public(request):
    return text("public")


@require_GET
def counter(request):
    try:
        n = request.session.update_value("counter", lambda n: (n or 0) + 1)
    except Superseded:
        # A write with an id that a login (in another tab) cycled away:
        # nothing was saved; the cookie is left as it is.
        return text("conflict: the session changed; retry", 409)
    return text(str(n))


@csrf_exempt
@require_POST
def login(request):
    request.session["user"] = request.POST.get("user", "")
    request.session.cycle_key()
    return HttpResponseRedirect("/", status=303)


@require_GET
def whoami(request):
    user = request.session.get("user")
    return text("not logged in", 401) if user is None else text(user)


@csrf_exempt
@require_POST
def logout(request):
    request.session.flush()
    return HttpResponseRedirect("/", status=303)


urlpatterns = [
    path("", index), path("public", public), path("counter", counter),
    path("login", login), path("whoami", whoami), path("logout", logout),
]
application = get_wsgi_application()
