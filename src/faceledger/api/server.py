"""An app factory configured from the environment, for ASGI servers:

    uvicorn --factory faceledger.api.server:app_from_env --host 127.0.0.1 --port 8765

(``faceledger serve`` does the same with command-line options.)
"""

from __future__ import annotations

from fastapi import FastAPI

from faceledger.api.app import create_app
from faceledger.config import load_config


def app_from_env() -> FastAPI:
    return create_app(load_config())
