"""Colours and sizes shared by every page: they live in :mod:`tl_core.theme` (edit them there), so the
HTML report (:mod:`tl_core.report`) draws domains, runs and statuses as the pages do."""

from tl_core.theme import *  # noqa: F401,F403
