"""Shared pieces of the Transfer Lab dashboard: colours, chart builders, cached resources,
session-state keys and small widgets used by ``app.py`` and ``pages/``.

Like the pages, this package never imports torch; it reads runs from the store and asks
``tl_core`` for everything else.
"""
