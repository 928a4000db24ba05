"""An example Django site with this project's WebSocket endpoint mounted in it.

It is what the README's "Mounted in your Django site" section shows, and what ``tests/test_django.py``
serves with uvicorn: session login, a view and a Celery task that publish, and ``asgi.py`` routing
the WebSocket path to the project's realtime. Copy the few lines you need into your own site.
"""
