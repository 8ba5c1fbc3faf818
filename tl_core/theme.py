"""Colours and sizes shared by every page and the HTML report, so a domain or a status looks the same
everywhere (here in tl_core, beside :mod:`tl_core.charts`, so the report can use them; the pages read them
through :mod:`tl_ui.theme`)."""

from __future__ import annotations

#: Every chart that distinguishes domains draws the source domain in blue ...
SOURCE = "#1f77b4"
#: ... and the target domain in orange.
TARGET = "#ff7f0e"
DOMAIN_COLORS = {"source": SOURCE, "target": TARGET}

#: One colour per run when runs are overlaid; blue and orange are left out because
#: they mean "source" and "target".
RUN_COLORS = ("#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
#: Line styles that tell runs apart in charts whose colours already mean domains.
RUN_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")

#: Feature-space scatters: points small and see-through enough that where blue and orange mix, both
#: show from the back of a room; each domain is drawn in FEATURE_LAYERS interleaved slices, so
#: neither colour is painted wholly over the other.
FEATURE_POINT_SIZE = 6
FEATURE_OPACITY = 0.55
FEATURE_LAYERS = 3

NEUTRAL = "#6e7781"
FROZEN_FILL = "#e5e7eb"
FROZEN_TEXT = "#6b7280"
TRAINABLE_FILL = "#dcfce7"
TRAINABLE_BORDER = "#16a34a"
HEAD_FILL = "#fef3c7"
HEAD_BORDER = "#d97706"

#: Readable at projector distance.
CHART_FONT_SIZE = 16
CHART_TITLE_SIZE = 19
CHART_HEIGHT = 420
#: The Present page (a projector at 1280x720, read from the back of a room): larger still.
PRESENT_FONT_SIZE = 20
PRESENT_TITLE_SIZE = 24
PRESENT_POINT_SIZE = 6

#: status -> (label shown to people, st.badge colour, material icon)
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "queued": ("Queued", "gray", ":material/schedule:"),
    "running": ("Running", "blue", ":material/autorenew:"),
    "completed": ("Completed", "green", ":material/check_circle:"),
    "stopped": ("Stopped", "orange", ":material/stop_circle:"),
    "failed": ("Failed", "red", ":material/error:"),
    "diverged": ("Diverged", "red", ":material/trending_up:"),
    "interrupted": ("Interrupted", "violet", ":material/power_off:"),
}


def run_color(i: int) -> str:
    """Colour of the i-th run in an overlay."""
    return RUN_COLORS[i % len(RUN_COLORS)]


def run_styles(runs: list) -> dict[str, tuple[str, str]]:
    """run id -> (colour, dash) for overlaid runs, by creation order, so the same runs look the
    same on every page whatever order they were picked in."""
    ordered = sorted(runs, key=lambda r: (r.created, r.id))
    return {r.id: (run_color(i), run_dash(i)) for i, r in enumerate(ordered)}


def run_dash(i: int) -> str:
    """Line style of the i-th run where colours mean domains."""
    return RUN_DASHES[i % len(RUN_DASHES)]
