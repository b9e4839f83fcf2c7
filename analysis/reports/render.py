"""Figures to HTML: a fragment for the analyst page (plotly.js comes from the site's static files) and one
standalone file with plotly.js inlined (opens offline, no CDN, nothing fetched)."""
from __future__ import annotations

import html
from collections.abc import Sequence

from plotly.offline import get_plotlyjs

from .build import Report, ReportFigure

PLOT_CONFIG = {"responsive": True, "displaylogo": False}


def figure_html(item: ReportFigure) -> str:
    """One figure as a <div> plus the script that draws it (expects ``Plotly`` to be loaded already)."""
    return item.figure.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=item.div_id,
                               config=PLOT_CONFIG, default_width="100%")


def render_fragment(figures: Sequence[ReportFigure]) -> str:
    return "\n".join(f'<section class="card report-figure">{figure_html(f)}</section>' for f in figures)


def questionnaire_table(report: Report) -> str:
    """The questionnaire summary as an HTML table in a card ('' without a questionnaire); every cell escaped."""
    frame = report.questionnaire
    if frame is None or frame.empty:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("item", "question", "kind", "answered", "summary"))
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in
                                    ("key", "text", "kind", "answered", "summary")) + "</tr>"
                   for row in frame.to_dict("records"))
    return (f'<section class="card" id="questionnaire-summary"><h2>Questionnaire</h2>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>")


STANDALONE_CSS = """
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2733;
       background: #f4f6f8; }
.page { max-width: 960px; margin: 0 auto; padding: 12px 14px 48px; }
.card { background: #fff; border-radius: 10px; padding: 12px; margin: 12px 0; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.muted { color: #5b6875; }
"""


def render_standalone(report: Report, *, generated: str = "") -> str:
    """The whole report as one self-contained HTML document (plotly.js inlined once)."""
    counts = " · ".join(f"{k}: {v}" for k, v in report.counts.items())
    title = html.escape(report.title or "Study report")
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{title} · report</title>\n<style>{STANDALONE_CSS}</style>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n<body>\n<main class=\"page\">\n"
        f"<h1>{title}</h1>\n<p class=\"muted\">{html.escape(counts)}"
        f"{' · generated ' + html.escape(generated) if generated else ''}. Error bars: 95% intervals from "
        "resampling groups.</p>\n"
        f"{render_fragment(report.figures)}\n{questionnaire_table(report)}\n</main>\n</body>\n</html>\n"
    )
