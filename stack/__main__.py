"""`make stack`: the production shape on one machine, until Ctrl-C.

PostgreSQL and Redis (data under ``var/stack/``), migrations, the demo users
and simulated gateways with their workload, two web workers (daphne, on the
ports of ``RUNBOARD_STACK_PORTS``) and two bridge processes (``runbridge``)
that share the gateways through leases. Every process gets the same settings
from the environment, as a deployment's would (docs/deploy.md). A process
that dies is reported and left dead: killing a bridge is how its failover is
tried. Ctrl-C (or SIGTERM) stops everything within 20 s.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from stack.servers import PostgresServer, RedisServer, ServerError, secret_key_env

ROOT = Path(__file__).resolve().parent.parent
STOP_BUDGET_S = 15.0


def stack_ports() -> list[int]:
    raw = os.environ.get("RUNBOARD_STACK_PORTS", "8001,8002")
    try:
        ports = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        raise SystemExit(
            f"RUNBOARD_STACK_PORTS={raw!r}: expected comma-separated port numbers"
        ) from None
    if not ports or any(not 1 <= p <= 65535 for p in ports):
        raise SystemExit(f"RUNBOARD_STACK_PORTS={raw!r}: expected ports between 1 and 65535")
    return ports


def secret_key(folder: Path) -> str:
    path = folder / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


class Stack:
    def __init__(self, folder: Path, web_ports: list[int], bridges: int = 2) -> None:
        self.folder = folder
        self.web_ports = web_ports
        self.bridges = bridges
        self.pg = PostgresServer(folder / "postgres", port=_port("RUNBOARD_STACK_PG_PORT", 54329))
        self.redis = RedisServer(folder / "redis", port=_port("RUNBOARD_STACK_REDIS_PORT", 63799))
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        self.pg.start()
        self.redis.start()
        self.env = {
            **os.environ,
            "RUNBOARD_DATABASE_URL": self.pg.url,
            "RUNBOARD_REDIS_URL": self.redis.url,
            **secret_key_env(lambda: secret_key(self.folder)),
        }
        self._manage("migrate", "--noinput")
        self._manage("demo_users")
        self._spawn("gateways", self._setup_demo())
        for port in self.web_ports:
            self._spawn(
                f"web:{port}",
                [sys.executable, str(ROOT / "manage.py"), "runweb", "--port", str(port)],
            )
        for n in range(1, self.bridges + 1):
            self._spawn(f"bridge:{n}", [sys.executable, str(ROOT / "manage.py"), "runbridge"])
        urls = ", ".join(f"http://127.0.0.1:{p}/" for p in self.web_ports)
        print(
            f"stack up: {urls} (PostgreSQL :{self.pg.port}, Redis :{self.redis.port})", flush=True
        )

    def _setup_demo(self) -> list[str]:
        """The demo's gateways and API token, as `make demo` has them; the gateways' command."""
        os.environ.update(self.env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runboard.settings")
        import django

        django.setup()
        from django.conf import settings

        from adminpanel.api.tokens import give_demo_token
        from adminpanel.management.commands.demo import register_sim_gateways, sim_gateway_args

        give_demo_token(settings.RUNBOARD_DEMO_API_TOKEN)
        base = settings.RUNBOARD_SIM_BASE_PORT
        register_sim_gateways(base)
        return sim_gateway_args(base, settings.RUNBOARD_DEMO_SEED)

    def _manage(self, *args: str) -> None:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=self.env, check=True)

    def _spawn(self, name: str, argv: list[str]) -> None:
        # A session of its own: Ctrl-C reaches this process, which stops the children in order.
        self.children[name] = subprocess.Popen(argv, env=self.env, cwd=ROOT, start_new_session=True)

    def watch(self, stop: list[bool]) -> None:
        reported: set[str] = set()
        while not stop[0]:
            for name, child in self.children.items():
                if child.poll() is not None and name not in reported:
                    reported.add(name)
                    print(f"{name} (pid {child.pid}) exited with {child.returncode}", flush=True)
            time.sleep(0.5)

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_BUDGET_S
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.redis.stop()
        self.pg.stop()


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SystemExit(f"{name}={raw!r}: expected a port between 1 and 65535")
    return int(raw)


def main() -> int:
    folder = Path(os.environ.get("RUNBOARD_VAR_DIR") or ROOT / "var") / "stack"
    stack = Stack(folder, stack_ports())
    stop = [False]

    def on_signal(signum: int, frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        stack.watch(stop)
    except (ServerError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
