"""A private Mosquitto: the broker ``trellis demo``, the tests and the benchmark start.

It listens on a free loopback port with its own configuration and persistence file
in a directory of its own, so it never meets the system broker or another instance.
Stopping it with SIGTERM makes Mosquitto save its persistent sessions, so a restart
(``stop()`` then ``start()``) keeps every queued QoS 1 message, as a production
broker restart would.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from trellis.core.net import free_port

__all__ = ["MosquittoProcess", "TlsFiles", "mosquitto_binary"]


def mosquitto_binary() -> str | None:
    """The ``mosquitto`` on the PATH (Debian installs it in /usr/sbin), or ``None``."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class TlsFiles:
    """Server certificate, key and the CA that client certificates must chain to."""

    def __init__(self, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file


class MosquittoProcess:
    """One ``mosquitto`` child process on ``127.0.0.1:port``."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        binary: str | None = None,
    ) -> None:
        found = binary or mosquitto_binary()
        if found is None:
            raise FileNotFoundError("no `mosquitto` binary on the PATH (apt install mosquitto)")
        self.binary = found
        self.directory = directory
        self.port = port or free_port()
        self.tls = tls
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config_file = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.config_file.write_text(self._config(), encoding="utf-8")

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:port`` (``mqtts://`` with TLS)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # Run as whoever started it: as root, mosquitto would otherwise switch to the
            # `mosquitto` user, which cannot write the persistence file in our directory.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_interval 0",
            # A persistent session must hold everything published while the platform is
            # down: the default of 1000 queued messages would drop the rest.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "log_type error",
            "log_type warning",
            f"log_dest file {self.log_file}",
        ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self._process is not None:
            raise RuntimeError("mosquitto is already running")
        stderr_file = self.directory / "mosquitto.stderr"
        with stderr_file.open("wb") as stderr:
            self._process = subprocess.Popen(  # noqa: S603  # our binary, our config file
                [self.binary, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # Its own session: Ctrl-C in the terminal goes to the whole foreground
                # group, and the broker must outlive the platform's drain (acks of
                # messages still in the pipeline); stop() ends it afterwards.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                error = stderr_file.read_text(errors="replace")
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                self._process = None
                raise RuntimeError(f"mosquitto exited at start: {error.strip()} {log.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"mosquitto did not listen on {self.port}") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker; SIGTERM makes it save its persistent sessions first."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port, with the saved sessions."""
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
