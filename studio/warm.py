"""Warm starts: a detached worker forks from a resident process that has already imported torch,
transformers and PEFT, so a training job, an export or an API server starts in a fraction of a
second instead of paying those imports (about 5 s on 2 cores, more on a laptop's disk) every time.

One resident process per Python, project checkout, library versions and environment (what the
libraries read when they are imported: OMP_NUM_THREADS, HF_HOME, CUDA_VISIBLE_DEVICES...), listening
on a Unix socket in a folder only this user may open, and ending itself after IDLE_SECONDS without a
request. A request names the worker module, its arguments, its folder and its whole environment, and
hands over the log file's descriptor. The resident forks a child; the child starts a session of its
own, sends its pid and runs the worker only once the requester has that pid (no worker runs that no
row records). A worker started warm must install a SIGTERM handler (training.train does so first,
`supervisor.run_task` before any work): until it does, SIGTERM is held back, not lost. The child
forgets every module of this project the resident had imported, so a worker always runs the code on
disk now.

Only third-party imports are shared, and never a CUDA context: the resident checks that torch has
not initialised CUDA (torch.cuda asks NVML, not the driver, for the device count here), as forked
DataLoader workers require. bitsandbytes is left out (engine.loading.leave_out_bitsandbytes), so a
job that quantises its base starts cold. Linux only (fork, SO_PEERCRED); TRANSLATOR_WARM_START=0
turns it off. Wherever a warm start cannot be had, the caller starts the worker cold, as
`python -m`, which is always correct, only slower. A miss starts the resident in the background for
the next worker rather than making this one wait for it.

This module imports only the standard library: the resident runs it, and nothing of the project may
be imported before the fork.
"""

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

IDLE_SECONDS = 20 * 60
# The libraries a worker would otherwise import itself; a version change means a new resident.
PRELOAD = ("torch", "transformers", "transformers.trainer", "peft", "accelerate", "safetensors.torch")
DISTRIBUTIONS = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers")
# Read by this project only, after the fork (or changing on every call): not a reason for a new
# resident. Everything else in the environment might be read by a library at import time.
OWN_VARIABLE_PREFIXES = ("TRANSLATOR_",)
VOLATILE_VARIABLES = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST"})
ENABLED_VARIABLE = "TRANSLATOR_WARM_START"
IDLE_VARIABLE = "TRANSLATOR_WARM_IDLE_SECONDS"
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
GO = b"go\n"
SOCKET_FOLDER_LIMIT = 60
CONNECT_SECONDS = 10.0  # a requester waits this long for the resident's answer
RECEIVE_SECONDS = 2.0  # the resident serves one request at a time: a silent one is dropped soon
serving_since: float | None = None  # set in the resident; a worker's fresh copy of this module has None


def start(module: str, arguments: list[str], log_path: Path, env: dict, cwd: Path) -> int | None:
    """The pid of `python -m MODULE ARGUMENTS` forked from the resident process, its output
    appended to `log_path`; None when no resident answers (one is started for the next worker)."""
    if not usable(env):
        return None
    socket_path = resident_socket(env, cwd)
    connection = _connect(socket_path)
    if connection is not None:
        pid = _request(connection, module, arguments, log_path, env, cwd)
        if pid is not None:
            return pid
    if resident_pid(socket_path) is None:  # none, or one that died: the next worker will have one
        start_resident(socket_path, env, cwd)
    return None


def _request(
    connection, module: str, arguments: list[str], log_path: Path, env: dict, cwd: Path
) -> int | None:
    """The pid of the worker the resident forked for this request; None when it did not answer
    (it is ending, or was killed): no child runs without the GO this sends last."""
    try:
        with connection, open(log_path, "ab") as log_file:
            request = {"module": module, "arguments": list(arguments), "cwd": str(cwd), "env": env}
            socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [log_file.fileno()])
            pid = int(json.loads(_read_line(connection))["pid"])
            connection.sendall(GO)
            return pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


def usable(env: dict) -> bool:
    return sys.platform == "linux" and env.get(ENABLED_VARIABLE, "1") not in ("0", "false", "no", "off")


def fingerprint(env: dict, cwd: Path) -> str:
    """What a resident's imports depend on: the interpreter, the checkout, the libraries' versions,
    this file and the environment the libraries may read."""
    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    library_env = {
        name: value
        for name, value in env.items()
        if name not in VOLATILE_VARIABLES and not name.startswith(OWN_VARIABLE_PREFIXES)
    }
    material = json.dumps(
        [sys.executable, str(Path(cwd).resolve()), versions, Path(__file__).read_bytes().hex(), library_env],
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def runtime_dir() -> Path:
    """A folder only this user can enter: whoever can reach the socket can run code as this user."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    if len(base) > SOCKET_FOLDER_LIMIT:  # a Unix socket's path has at most 107 bytes
        base = "/tmp"
    folder = Path(base) / f"translator-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    status = folder.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise PermissionError(f"{folder} must be a folder of user {os.getuid()} that only it may open")
    return folder


def resident_socket(env: dict, cwd: Path) -> Path:
    return runtime_dir() / f"{fingerprint(env, cwd)}.sock"


def start_resident(socket_path: Path, env: dict, cwd: Path) -> None:
    """Start the resident for `socket_path` in the background; it ends at once when another holds
    the place, and for good (a `.failed` file) when its imports fail."""
    if socket_path.with_suffix(".failed").exists():
        return
    with open(socket_path.with_suffix(".log"), "ab") as log_file:
        subprocess.Popen(
            [sys.executable, "-m", "studio.warm", str(socket_path)],
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1", "PYTORCH_NVML_BASED_CUDA_CHECK": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def resident_pid(socket_path: Path) -> int | None:
    """The pid of the resident serving `socket_path`, from its lock file; None when none holds it."""
    lock_path = socket_path.with_suffix(".lock")
    try:
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                return int(lock.read().strip() or 0) or None
            fcntl.flock(lock, fcntl.LOCK_UN)
            return None
    except (OSError, ValueError):
        return None


def _connect(socket_path: Path) -> socket.socket | None:
    if not socket_path.exists():
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(CONNECT_SECONDS)
    try:
        connection.connect(str(socket_path))
    except OSError:  # a resident killed without removing its socket, or ending right now
        connection.close()
        return None
    return connection


def _read_line(connection: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a whole line")
        data += chunk
        if len(data) > limit:
            raise ValueError("line too long")
    return data


# The resident process.


def serve(socket_path: Path) -> dict | None:
    """Hold the place for `socket_path`, import the libraries, answer requests until idle; returns
    only in a forked child, with the request it is to run."""
    lock = open(socket_path.with_suffix(".lock"), "a+")  # held for the resident's whole life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None  # another resident serves, or is starting for, this socket
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    global serving_since
    serving_since = time.time()
    try:
        _preload()
        socket_path.unlink(missing_ok=True)  # a resident killed before it could remove it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(socket_path))
    except BaseException as error:  # not usable here: every later start is cold, and says why once
        socket_path.with_suffix(".failed").write_text(f"{type(error).__name__}: {error}\n")
        raise
    listener.listen(64)
    bound = socket_path.stat().st_ino
    listener.settimeout(float(os.environ.get(IDLE_VARIABLE, IDLE_SECONDS)))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children: no zombies

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends it at once
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                return None
            request = _receive(connection)
            if request is None:
                continue
            child = os.fork()
            if child == 0:
                listener.close()
                lock.close()
                return _become_child(connection, request)
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {child}: {request['module']}", flush=True)
            for descriptor in request["fds"]:
                os.close(descriptor)
            connection.close()
    finally:
        if os.getpid() == int(Path(lock.name).read_text() or 0):
            try:
                if socket_path.stat().st_ino == bound:
                    socket_path.unlink()
            except OSError:
                pass


def _preload() -> None:
    sys.modules.setdefault("bitsandbytes", None)  # as engine.loading.leave_out_bitsandbytes
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    torch = sys.modules["torch"]
    if torch.cuda.is_initialized():
        raise RuntimeError("torch initialised CUDA while importing; a forked worker could not use it")


def _receive(connection: socket.socket) -> dict | None:
    """The request on `connection`, from a process of this user; None (and the connection closed)
    for anything else."""
    fds: list[int] = []
    try:
        connection.settimeout(RECEIVE_SECONDS)
        credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", credentials)
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 1)
        if not message:  # connected and closed: someone checking that the resident answers
            connection.close()
            return None
        while not message.endswith(b"\n"):
            chunk = connection.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed before a whole request")
            message += chunk
        request = json.loads(message)
        if uid != os.getuid() or len(fds) != 1 or not MODULE_NAME.match(request["module"]):
            raise PermissionError(f"refused a request from uid {uid}")
        request["fds"] = fds
        return request
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"warm start: {error}", file=sys.stderr)
        for descriptor in fds:
            os.close(descriptor)
        connection.close()
        return None


def _become_child(connection: socket.socket, request: dict) -> dict | None:
    """In the forked child: a session of its own, the request's output, folder and environment;
    the worker runs only after the requester answered GO."""
    os.setsid()
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    _hold_sigterm_until_handled()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as the interpreter sets it at start
    log = request["fds"][0]
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        if _read_line(connection, limit=16) != GO:
            return None
    except (OSError, ValueError):
        return None  # the requester is gone: nobody would know this worker
    finally:
        connection.close()
    return request


def _hold_sigterm_until_handled() -> None:
    """A stop can come the moment the requester has the pid, before the worker installed its
    handler: SIGTERM waits, blocked, until the worker installs one, and then reaches it (a cold
    start would die of it half-started instead)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    install = signal.signal

    def install_then_release(signum, handler):
        previous = install(signum, handler)
        if signum == signal.SIGTERM:
            signal.signal = install
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return previous

    signal.signal = install_then_release


def _forget_project_modules() -> None:
    """Modules of the checkout's packages the resident imported (this one, its package) are read
    again; the libraries, even in a virtualenv inside the checkout, are kept."""
    packages = {entry.name for entry in Path.cwd().iterdir() if (entry / "__init__.py").is_file()}
    for name in list(sys.modules):
        if name.partition(".")[0] in packages:
            del sys.modules[name]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    request = serve(Path(args[0]))
    if request is None:
        return
    import runpy

    _forget_project_modules()
    sys.argv = [request["module"], *request["arguments"]]
    sys.path[0] = request["cwd"]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
