# One image for every role of the service: migrate, sync/listen, beat, worker, web.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --system --create-home --home-dir /home/triage triage
COPY pyproject.toml README.md alembic.ini ./
COPY triage ./triage
COPY workers ./workers
COPY migrations ./migrations
RUN pip install -e .
USER triage
ENTRYPOINT ["triage"]
CMD ["--help"]
