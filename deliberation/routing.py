from django.urls import path

from .consumers import ParticipantConsumer

websocket_urlpatterns = [
    path("ws/p/<str:token>/", ParticipantConsumer.as_asgi()),
]
