"""The middleware behind real WSGI servers: wsgiref in-process, gunicorn and waitress as subprocesses,
with a plain WSGI app and a Flask app."""
import http.cookiejar
import sys
import threading
import urllib.error
import urllib.request

from vishnu.middleware import SessionMiddleware

from conftest import config, routes


class Browser(object):
    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path):
        try:
            res = self.opener.open(self.base + path, timeout=10)
            return res.status, res.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def exercise_plain(base):
    b = Browser(base)
    assert b.get("/public") == (200, "public")
    assert b.get("/incr") == (200, "1")
    assert b.get("/incr") == (200, "2")
    assert b.get("/set/user/ada") == (200, "saved")
    assert b.get("/get/user") == (200, '"ada"')
    assert b.get("/stream") == (200, "start end")
    assert b.get("/get/late") == (200, '"yes"')
    # Concurrent increments over real sockets and threads are never lost.
    threads = [threading.Thread(target=lambda: b.get("/incr")) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.get("/get/n") == (200, "22")
    assert b.get("/terminate") == (200, "bye")
    assert b.get("/get/user") == (200, "none")


def exercise_flask(base):
    b = Browser(base)
    assert b.get("/whoami")[0] == 401
    assert b.get("/login/ada") == (200, "welcome")
    assert b.get("/whoami") == (200, "ada")
    assert b.get("/incr") == (200, "1")


def test_wsgiref_plain_app(wsgiref_server):
    exercise_plain(wsgiref_server(SessionMiddleware(routes, config(auto_save=True))))


def test_wsgiref_flask_app(wsgiref_server):
    import wsgi_apps
    exercise_flask(wsgiref_server(wsgi_apps.flask_app))


def test_gunicorn_plain_and_flask(subprocess_server):
    base = subprocess_server([sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:{port}",
                              "--threads", "8", "wsgi_apps:plain"])
    exercise_plain(base)
    base = subprocess_server([sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:{port}",
                              "--threads", "4", "wsgi_apps:flask_app"])
    exercise_flask(base)


def test_waitress_plain_app(subprocess_server):
    base = subprocess_server([sys.executable, "-m", "waitress", "--listen=127.0.0.1:{port}",
                              "--threads=8", "wsgi_apps:plain"])
    exercise_plain(base)
