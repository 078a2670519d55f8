"""The console's routes: HTML pages, and the JSON API under /api."""
