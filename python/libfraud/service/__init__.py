"""The HTTP service over the core: `libfraud serve BUNDLE` (FastAPI on uvicorn).

Routes, errors and threading: app.py; request bodies: events_json.py; Prometheus text: metrics.py;
the command line: serve_cli.py. Needs the `serve` extra (``pip install 'libfraud[serve]'``).
"""

from .config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig, **kwargs):
    from .app import create_app as make
    return make(config, **kwargs)
