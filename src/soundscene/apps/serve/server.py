"""``run_server``: load a model file and serve it with uvicorn until Ctrl-C (``soundscene serve MODEL``).

Binds to 127.0.0.1 unless told otherwise, and warns when told otherwise: the service has no
authentication.  The listening socket is made here, so that a bad or busy address is one line
(SoundsceneError) before uvicorn starts.
"""

from __future__ import annotations

from pathlib import Path

from ..._version import __version__
from ..._net import listen
from ...errors import SoundsceneError, warn
from .app import create_app


MAX_UPLOAD_MB = 10_000.0  # 10 GB: a day of 48-kHz 24-bit stereo is about 25 GB, too much for one upload


def run_server(model_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 50,
               log_level: str = "info", calibration_db: float | None = None, levels: bool = True) -> None:
    """Load ``model_path`` (a model file or run folder) and serve it until Ctrl-C.

    ``max_upload_mb`` is in megabytes of 1,000,000 bytes.  Raises SoundsceneError (one line) for a bad
    model file, a bad limit, or an address that cannot be listened on; blocks otherwise.
    """
    import uvicorn

    from ...core.inference import SceneClassifier

    if not 0 < max_upload_mb <= MAX_UPLOAD_MB:  # also refuses nan
        raise SoundsceneError(f"--max-upload-mb {max_upload_mb:g} is outside 0..{MAX_UPLOAD_MB:g} MB")
    if not (0 <= int(port) <= 65535):
        raise SoundsceneError(f"--port must be in 0..65535, got {port}")
    classifier = SceneClassifier.from_file(model_path, calibration_db=calibration_db,  # ModelFileError: one line
                                           levels=levels)
    app = create_app(classifier, max_upload_bytes=int(max_upload_mb * 1_000_000))
    sock = listen(host, int(port))
    shown = f"[{host}]" if ":" in host else host
    bound_port = sock.getsockname()[1]
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"listening on {host}: the service has no authentication; anyone who can reach this address "
             "can use it")
    print(f"soundscene {__version__}: serving {model_path} on http://{shown}:{bound_port}/ "
          f"(API docs: /docs, schema: /openapi.json; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level=log_level, server_header=False, proxy_headers=False,
                            timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])
