# sockworks in a container: the KV server on its embedded store under /data,
# or in front of Redis (compose.yaml). Build: docker build -t sockworks .
# Run with --init (or compose's `init: true`): tini is PID 1, forwards SIGTERM
# to the server (which stops gracefully) and reaps the children the forking
# models (prefork, socketserver-fork) leave to PID 1 if the server dies.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
# setup.py: the optional compiled hot path. The slim image has no C compiler,
# so the install skips it and serves on the pure-Python path (sockworks
# --version says so); a builder stage with gcc would compile it.
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# DL3013: this installs the project being built, whose version is the source's.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[fast,redis,metrics]' \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin sockworks \
 && mkdir -p /data && chown sockworks:sockworks /data

USER 10001:10001
VOLUME ["/data"]
# 9000: KV text protocol, 6380: RESP, 9100: metrics, /healthz, /readyz
EXPOSE 9000 6380 9100

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9100/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["sockworks", "serve", "kv"]
CMD ["--host", "0.0.0.0", "--data-dir", "/data", "--resp-port", "6380", \
     "--metrics-host", "0.0.0.0", "--metrics-port", "9100"]
