"""The admin console: a server-rendered web app and a JSON API over the stored results."""
