"""The Django project: settings, URLs, the ASGI entry point, environment parsing."""
