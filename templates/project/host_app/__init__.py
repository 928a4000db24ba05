"""The example host app (``app.py``): the team's own application with the realtime endpoint mounted."""
