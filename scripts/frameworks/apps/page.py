"""The demo page, the same markup as the Rust and WSGI demos' (scripts/check_demo.py reads it)."""
import html


def page(visits, user):
    who = ('<p>Logged in as <b id="user">%s</b>.</p><form method="post" action="/logout">'
           '<button>Log out</button></form>' % html.escape(user) if user else
           '<form method="post" action="/login"><input name="user" placeholder="your name">'
           '<button>Log in</button></form>')
    return ('<!doctype html><meta charset="utf-8"><title>vishnu demo</title>'
            '<h1>vishnu demo</h1><p>Visits: <span id="counter">%d</span> '
            '(<a href="/counter">count one more</a>)</p>%s' % (visits, who))
