FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY adapters ./adapters
COPY bench ./bench
COPY rules ./rules
COPY schemas ./schemas
RUN pip install --no-cache-dir .
# All interfaces of the container, so that the published port reaches the service (the settings'
# default, 127.0.0.1, is the container's own loopback).
ENV HTTP_HOST=0.0.0.0 HTTP_PORT=8080
USER nobody
EXPOSE 8080
# /healthz: the process is up. With the standard library only (the slim image has no curl);
# urlopen raises on anything but 2xx, so the check fails.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)" || exit 1
CMD ["contact-router", "serve", "--embedded", "never"]
