"""The dashboard's Plotly figure builders: they live in :mod:`tl_core.charts` (edit them there), so the
HTML report (:mod:`tl_core.report`, which may not import tl_ui) draws the same figures as the pages."""

from tl_core.charts import *  # noqa: F401,F403
from tl_core.charts import _figure, _layout  # noqa: F401 - used by pages' tests
