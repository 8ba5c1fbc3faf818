"""Present: the selected runs on one projector screen (1280x720): target accuracy per epoch and each run's
feature space before and now, in large type (tl_ui/present_view.py)."""

from tl_ui import entry, present_view

entry.require_app()
present_view.main()
