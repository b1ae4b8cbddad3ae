"""The server's settings: address, token, folders and limits, with defaults that work."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from easel.core.budget import DEFAULT_MAX_PIXELS, Budget

MB = 1024 * 1024


def default_data_dir() -> Path:
    """$EASEL_DATA_DIR, else the platform's user data folder for easel."""
    env = os.environ.get("EASEL_DATA_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("easel"))


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """Everything `easel serve` can change; the defaults serve on loopback from the data dir."""

    host: str = "127.0.0.1"
    port: int = 8188
    token: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    output_dir: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 8 * MB
    max_upload_bytes: int = 32 * MB
    max_upload_pixels: int = 40_000_000  # one frame of an upload
    max_pixels: int = DEFAULT_MAX_PIXELS  # the budget: width x height x frames x batch
    history_limit: int = 10_000
    worker_process: bool = True  # run in a supervised worker process (False: a thread here)
    cancel_grace: float = 10.0  # seconds a cancelled node has to return before its worker goes
    retries: int = 2  # times a run whose worker died is started again
    prestart_worker: bool = True  # start the worker process with the server, not the first run

    @property
    def budget(self) -> Budget:
        return Budget(self.max_pixels)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        self.output_dir = Path(self.output_dir or self.data_dir / "output").expanduser().resolve()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "queue.sqlite3"

    @property
    def input_dir(self) -> Path:
        """Uploaded images; LoadImage reads from here only."""
        return self.data_dir / "input"

    @property
    def user_workflows_dir(self) -> Path:
        return self.data_dir / "workflows"

    @property
    def outputs(self) -> Path:
        assert self.output_dir is not None
        return self.output_dir

    @property
    def exposed(self) -> bool:
        """Bound to a non-loopback address: a token is then required."""
        return not is_loopback(self.host)

    def make_dirs(self) -> None:
        for folder in (self.data_dir, self.input_dir, self.user_workflows_dir, self.outputs):
            folder.mkdir(parents=True, exist_ok=True)

    def private_roots(self) -> tuple[str, ...]:
        """Folders shown to clients by name instead of by absolute path."""
        return (
            f"input={self.input_dir}",
            f"output={self.outputs}",
            f"workflows={self.user_workflows_dir}",
            f"data={self.data_dir}",
            f"home={Path.home()}",
        )
