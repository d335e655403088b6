"""An nginx.conf around the Runboard site that runs without root-owned paths, for the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "runboard.conf"
NGINX = "/usr/sbin/nginx"
CERT = "/etc/ssl/certs/runboard.example.com.pem"
KEY = "/etc/ssl/private/runboard.example.com.key"


def require_nginx() -> str:
    assert os.access(NGINX, os.X_OK), f"{NGINX} is missing: apt-get install nginx (as root)"
    return NGINX


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    assert openssl, "openssl is missing: apt-get install openssl"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=runboard.example.com", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [openssl, *request, *subject],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def nginx_conf_around_site(folder: Path, site: str, *, main: str = "") -> Path:
    """An nginx.conf like Debian's, including ``site``, with every path nginx writes in ``folder``.

    The site's certificate placeholders point at a self-signed certificate made
    here; ``main`` adds directives at the top level (``user``, ``daemon``).
    """
    for placeholder in (CERT, KEY):
        assert placeholder in site, f"the site no longer names {placeholder}: update this test"
    cert, key = self_signed_cert(folder)
    (folder / "runboard.conf").write_text(site.replace(CERT, str(cert)).replace(KEY, str(key)))
    temp_paths = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{main}\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'};\n"
        "events {}\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        f"    access_log {folder / 'access.log'};\n"
        f"{temp_paths}\n"
        f"    include {folder / 'runboard.conf'};\n"
        "}\n"
    )
    return conf


def nginx_command(conf: Path, *args: str) -> list[str]:
    """nginx with this configuration; its error log in the same folder."""
    folder = conf.parent
    error_log = str(folder / "error.log")
    return [require_nginx(), "-p", str(folder), "-c", str(conf), "-e", error_log, *args]
