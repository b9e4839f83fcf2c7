from django.urls import path

from . import views

urlpatterns = [
    path("p/<str:token>/screening/", views.screening, name="participant_screening"),
    path("p/<str:token>/questionnaire/", views.questionnaire, name="participant_questionnaire"),
    path("p/<str:token>/withdraw/", views.withdraw, name="participant_withdraw"),
]
