# faceledger in a container: the CLI and the REST API (`faceledger serve`), embedded models
# (dlib, from PyPI) included; ONNX models come from a mounted mirror or are downloaded.
# Build and run: docs/CONTAINER.md. BASE may name any Debian-like image with Python >= 3.10.
ARG BASE=docker.io/library/python:3.11-slim
FROM ${BASE}

RUN python3 -m venv /opt/faceledger \
    && useradd --system --user-group --home-dir /data --create-home faceledger
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/faceledger/bin/pip install --no-cache-dir /src && rm -rf /src

ENV PATH=/opt/faceledger/bin:$PATH \
    FACELEDGER_DB=/data/gallery.db \
    FACELEDGER_MODEL_CACHE=/data/models
USER faceledger
WORKDIR /data
VOLUME /data
EXPOSE 8765
# /livez needs no API key and reveals nothing: {"status": "ok"} while the server serves
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/livez', timeout=4)"]
ENTRYPOINT ["faceledger"]
CMD ["serve", "--host", "0.0.0.0"]
