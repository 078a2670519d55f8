"""Database access: table models, engine and sessions, repositories."""
