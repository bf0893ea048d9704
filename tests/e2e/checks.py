"""What the end-to-end scripts share: counted checks, free loopback ports, and whether this is CI."""
import os
import socket


def under_ci():
    """Whether this is a CI run (CI is `true` or `1`): there nothing may be skipped."""
    return os.environ.get("CI", "").lower() in ("true", "1")


class Checks(object):
    """Counts and prints named checks; `summary(name)` is the closing plain line."""

    def __init__(self):
        self.passes = 0
        self.failures = 0

    def __call__(self, name, ok, detail=""):
        if ok:
            self.passes += 1
            print("ok    " + name, flush=True)
        else:
            self.failures += 1
            print("FAIL  " + name + (f"  ({detail})" if detail != "" else ""), flush=True)
        return ok

    def summary(self, name):
        print(f"{name}: {self.passes} passed, {self.failures} failed")
        return 1 if self.failures else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
