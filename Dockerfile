# Royal: `royal serve` (Hypercorn, hypercorn.toml) as a non-root user.
#
#   docker build -t royal .
#   docker run -d --name royal -p 8000:8000 -v royal-data:/var/lib/royal \
#       -e ROYAL_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" \
#       --stop-timeout 20 royal
#   docker logs royal        # the first run prints the admin password, once
#
# ROYAL_ENV is production: the container refuses to start without ROYAL_SECRET_KEY (32+
# characters). The SQLite file lives in the /var/lib/royal volume; set ROYAL_DATABASE_URL to a
# postgresql:// URL to use PostgreSQL instead (required for more than one machine).
# Other commands: `docker run --rm ... royal db status`, `docker exec -it royal royal user create
# NAME` (the image's entrypoint is the `royal` command).
# docs/deploy.md covers workers, the proxy, probes, shutdown timing and backups.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install Royal and its dependencies into a virtualenv --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the wheel is built from (pyproject.toml: packages = ["royal"], sql/ force-included).
COPY pyproject.toml README.md ./
COPY sql ./sql
COPY royal ./royal
# Every dependency has a manylinux wheel for CPython 3.11: no compiler needed. The check runs
# outside /src, so it imports the installed package and finds the migrations inside it.
RUN /opt/venv/bin/pip install . \
    && cd / \
    && /opt/venv/bin/python -c "from royal.db.migrations import SQL_DIR as d; \
assert 'site-packages' in str(d) and sorted(d.glob('*/0001_*.sql')), f'no migrations in {d}'"

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# tini as PID 1 forwards SIGTERM to `royal serve` and reaps orphans; the server drains itself.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so a volume or a bind mount can be owned by it on the host too.
RUN groupadd --system --gid 10001 royal \
    && useradd --system --uid 10001 --gid royal --home-dir /var/lib/royal --no-create-home \
        --shell /usr/sbin/nologin royal \
    && mkdir -p /var/lib/royal \
    && chown royal:royal /var/lib/royal

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY hypercorn.toml ./

# ROYAL_DATABASE_URL: Quart's instance folder of a package installed in /opt/venv would be
# /opt/venv/var/royal-instance (root's, inside the image); the database goes to the volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ROYAL_ENV=production \
    ROYAL_DATABASE_URL=sqlite:////var/lib/royal/royal.sqlite3 \
    HEALTHCHECK_URL=http://127.0.0.1:8000/healthz

# Declared after the chown: a new named volume starts as a copy of this folder, owned by royal.
VOLUME ["/var/lib/royal"]
USER royal:royal
EXPOSE 8000

# Liveness through /healthz with Python (slim has no curl). HEALTHCHECK_URL follows a changed
# bind or TLS (https://127.0.0.1:8000/healthz: the certificate is not checked on loopback).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request; ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE; r = urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4, context=ctx); sys.exit(0 if r.status == 200 else 1)"]

# SIGTERM (docker stop) ends open streams, then Hypercorn waits up to graceful_timeout (10 s)
# for in-flight requests: give it more than the default 10 s (docker run --stop-timeout 20,
# compose stop_grace_period: 20s, Kubernetes terminationGracePeriodSeconds: 20).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "royal"]
CMD ["serve", "--config", "/app/hypercorn.toml"]
