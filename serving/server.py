"""The OpenAI-compatible API server (see serving/api.py): in the foreground, or detached and
re-attached like a training job.

    python -m serving.server serve --base builtin --port 8000          # foreground, Ctrl-C stops it
    python -m serving.server start --base builtin --port 8000          # detached; prints its task id
    python -m serving.server list
    python -m serving.server stop ID

It binds 127.0.0.1 unless told otherwise; any other address needs an API key (`--api-key`, or the
environment variable TRANSLATOR_API_KEY), and requests without it get 401. The key is never written
to the registry or a log. Any OpenAI client then works:

    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").chat.completions.create(
        model="med-zh-1", messages=[{"role": "user", "content": "The patient has a fever."}])
"""

import argparse
import ipaddress
import os
import socket
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from core.errors import UserError  # noqa: E402
from registry import connect  # noqa: E402
from registry import tasks as task_rows  # noqa: E402
from registry.tasks import Task
from serving import tasks  # noqa: E402
from studio import accounts

KEY_VARIABLE = "TRANSLATOR_API_KEY"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def check_binding(host: str, api_key: str | None) -> None:
    """Only this machine may call a server without a key."""
    if not api_key and not _loopback(host):
        raise UserError("ERR_API_KEY_NEEDED", host=host, variable=KEY_VARIABLE)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError("ERR_PORT_TAKEN", host=host, port=port, error=error.strerror) from error


def url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def start(
    db,
    *,
    base: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Launch a detached server task, after the checks that need no model."""
    from engine import catalogue

    check_binding(host, api_key)
    check_port_free(host, port)
    spec = catalogue.parse_model_id(base)
    settings = {
        "base": spec.model_id,
        "host": host,
        "port": port,
        "device": device,
        "trust_remote_code": trust_remote_code,
        "api_key": bool(api_key),
    }
    return tasks.launch(db, "server", "", settings, env={KEY_VARIABLE: api_key} if api_key else None)


def serve(
    *,
    base: str,
    host: str,
    port: int,
    api_key: str | None,
    device=None,
    trust_remote_code=False,
    on_ready=None,
) -> None:
    """Load the model, then answer until SIGINT/SIGTERM (open responses are finished first)."""
    import uvicorn

    from engine.generation import ChatEngine
    from serving.api import create_app

    team = accounts.team_on(connect())  # personal keys: each request sees what its account may
    if not team:
        check_binding(host, api_key)
    check_port_free(host, port)
    engine = ChatEngine(base, device=device, trust_remote_code=trust_remote_code)
    app = create_app(engine, api_key=api_key, team=team)
    config = uvicorn.Config(app, host=host, port=port, log_level="info")
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                on_ready()

        server.startup = startup
    server.run()


def serve_task(db, task: Task) -> None:
    """The detached server's process (see serving.tasks): running once it listens."""
    settings = task.settings
    address = url(settings["host"], settings["port"])

    def ready():
        task_rows.update(db, task.id, status="running", result={"url": address})

    serve(
        base=settings["base"],
        host=settings["host"],
        port=settings["port"],
        api_key=os.environ.get(KEY_VARIABLE) or None,
        device=settings.get("device"),
        trust_remote_code=settings.get("trust_remote_code", False),
        on_ready=ready,
    )


def running(db) -> list[Task]:
    return [t for t in tasks.list_recent(db, kind="server") if t.status in task_rows.ACTIVE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "start"):
        command = commands.add_parser(name)
        command.add_argument("--base", default="builtin", help="base model id (default builtin)")
        command.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
        command.add_argument("--port", type=int, default=DEFAULT_PORT)
        command.add_argument("--api-key", help=f"required beyond 127.0.0.1 (or set {KEY_VARIABLE})")
        command.add_argument("--device", help="cpu or cuda")
        command.add_argument("--trust-remote-code", action="store_true")
    commands.add_parser("list")
    command = commands.add_parser("stop")
    command.add_argument("id", type=int)
    args = parser.parse_args(argv)
    try:
        db = connect()
        if args.command == "list":
            for task in tasks.list_recent(db, kind="server"):
                where = task.result.get("url", task.settings.get("host"))
                print(f"{task.id}\t{task.status}\t{task.settings.get('base')}\t{where}")
            return 0
        if args.command == "stop":
            task = task_rows.get(db, args.id)
            if task is not None:  # in team mode, only a server of the key's account (or any, for the owner)
                accounts.cli_asker(db).may_change(task.owner_id, "task", f"#{args.id}")
            if not tasks.stop(db, args.id):
                raise UserError("ERR_TASK_NOT_RUNNING", id=args.id)
            print(f"stopping server {args.id}")
            return 0
        api_key = args.api_key or os.environ.get(KEY_VARIABLE) or None
        if args.command == "start":
            task = start(
                db,
                base=args.base,
                host=args.host,
                port=args.port,
                api_key=api_key,
                device=args.device,
                trust_remote_code=args.trust_remote_code,
            )
            print(f"server {task.id} starting at {url(args.host, args.port)} (log: {task.log_path})")
            return 0
        serve(
            base=args.base,
            host=args.host,
            port=args.port,
            api_key=api_key,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
