"""Helpers shared by the stores written in Python."""
import datetime
import json
import time

THIRTY_DAYS = 30 * 86400


def now_ms():
    """The system clock, in milliseconds. The engine's clock decides expiry; a store reads this one
    only where the engine gives it no ``now``: in load, create, save and touch (the PythonStore
    protocol has no such argument; like the Rust stores' own checks, theirs only spares a
    round trip, as the engine checks expiry again with its clock after every load), and at a
    cleanup entry point run without an engine (vishnu.util), which reads it once and passes it on."""
    return int(time.time() * 1000)


def expired(record_json, now=None):
    """Whether a JSON record is past its expires_at at ``now`` (ms; the system clock when not
    given, see :func:`now_ms`). An unreadable record counts as expired, as a load would refuse it."""
    try:
        return json.loads(record_json)["expires_at"] <= (now_ms() if now is None else now)
    except (ValueError, KeyError, TypeError):
        return True


def doomed(record_json, now, dormant_for):
    """Whether cleanup at ``now`` (ms) may delete a JSON record: expired (``expires_at <= now``),
    or not accessed for ``dormant_for`` seconds (``last_access <= now - dormant_for``), the rule
    of the stores' index queries and of the Rust stores. The cleanups ask this again inside the
    transaction that deletes, since the query that found the record may be older than a refresh."""
    try:
        record = json.loads(record_json)
        return record["expires_at"] <= now or record["last_access"] <= now - int(dormant_for) * 1000
    except (ValueError, KeyError, TypeError):
        return True


def version(record_json):
    return json.loads(record_json)["version"]


def touched(record_json, last_access, expires_at):
    """The record with its times moved forward (never back: a late touch from
    a request that read a shorter timeout must not undo a longer one), and its
    resulting expiry."""
    record = json.loads(record_json)
    record["last_access"] = max(record.get("last_access", 0), last_access)
    record["expires_at"] = max(record.get("expires_at", 0), expires_at)
    return json.dumps(record, separators=(",", ":")), record["expires_at"]


def memcache_time(expires_at_ms):
    """memcached's expiry: relative seconds up to 30 days, an absolute Unix time beyond.
    Relative seconds count on memcache's own clock, so the system clock is the right reference
    here, whatever the engine's clock says."""
    seconds = max(1, -(-(expires_at_ms - now_ms()) // 1000))
    return seconds if seconds <= THIRTY_DAYS else expires_at_ms // 1000


def to_datetime(ms):
    """Naive UTC datetime, as the original stored."""
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
