"""The bottom layer: pure algorithms and the errors every layer shares (docs/architecture.md).

Django-free, no I/O: the group state machine (``flow``), lobby matching (``matching``), social choice
(``social_choice``), welfare functions (``welfare``), the analysis metrics (``metrics``). Every app may
import from here; nothing here imports an app.
"""
