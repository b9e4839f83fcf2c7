"""Analyst reports: plotly figures of a study's metrics, for the analyst page and a standalone HTML file.

data.py (the only Django-aware module: one study from the database into plain frames) → build.py (metrics,
leave-one-out and representation summaries → the list of figures) → figures.py (one builder per figure,
plain frames in, plotly figure out) → render.py (an HTML fragment for the page, or one self-contained file).
"""
