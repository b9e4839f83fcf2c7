"""The language participants and judges see: their study's (``Study.language``, ``LegibilityStudy.language``).

No ``LocaleMiddleware``: the study decides, not the browser, so everyone in a group reads the same wording and a
stored consent version names the text they saw. Admin, monitor and analyst pages stay in ``LANGUAGE_CODE``. Views
use the decorator and call ``use_study_language`` once they have loaded the study; the websocket consumer wraps
its work in ``translation.override(study.language)`` itself.
"""
from __future__ import annotations

from contextlib import ExitStack
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils import translation
from django.views.i18n import JavaScriptCatalog


def in_study_language(view):
    """View decorator: what the view renders after ``use_study_language(request, study)`` is in the study's
    language; the previous language is back when the view returns (or raises)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        with ExitStack() as stack:
            request.study_language_scope = stack
            return view(request, *args, **kwargs)

    return wrapper


def use_study_language(request, study) -> None:
    """From now until the view returns, translate into ``study.language`` (the view must be ``in_study_language``)."""
    request.study_language_scope.enter_context(translation.override(study.language))


_catalog = JavaScriptCatalog.as_view()
_rendered: dict[str, bytes] = {}  # language -> the catalog's JavaScript; catalogs are loaded once per process


def javascript_catalog(request, language: str) -> HttpResponse:
    """The ``gettext()`` catalog of static/js (``djangojs``) in ``language``, which the participant and judge pages
    name in the URL (their study's), so the browser's own language never matters. Built once per process and
    language (every participant page loads it)."""
    if language not in dict(settings.LANGUAGES):
        raise Http404("No such language.")
    if language not in _rendered:
        with translation.override(language):
            _rendered[language] = _catalog(request).content
    return HttpResponse(_rendered[language], content_type="text/javascript; charset=utf-8")
