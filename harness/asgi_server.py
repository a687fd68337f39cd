"""The ASGI application as a server process runs it: `daphne … harness.asgi_server:application` (deploy:
Procfile, systemd units). Importing this module tunes the process (`harness/process.py`); import
`harness.asgi` instead to get the application without that."""

from harness.asgi import application
from harness.process import configure_server_process

configure_server_process()

__all__ = ["application"]
