FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY adapters ./adapters
COPY bench ./bench
COPY rules ./rules
COPY schemas ./schemas
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8080
CMD ["contact-router", "serve", "--embedded", "never"]
