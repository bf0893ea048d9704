"""Helpers shared by the stores written in Python."""
import datetime
import json
import time

THIRTY_DAYS = 30 * 86400


def now_ms():
    return int(time.time() * 1000)


def expired(record_json, now=None):
    """Whether a JSON record is past its expires_at."""
    try:
        return json.loads(record_json)["expires_at"] <= (now_ms() if now is None else now)
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
    """memcached's expiry: relative seconds up to 30 days, an absolute Unix time beyond."""
    seconds = max(1, -(-(expires_at_ms - now_ms()) // 1000))
    return seconds if seconds <= THIRTY_DAYS else expires_at_ms // 1000


def to_datetime(ms):
    """Naive UTC datetime, as the original stored."""
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
