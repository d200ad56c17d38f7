#!/opt/venv/bin/python
"""The entrypoint of the test bed's Synapse image: the interface of the official image's
docker/start.py, without its config templating.

    start.py [run] [ARGS...]   run Synapse (the default): ARGS go to python. Without `-m`
                               among them, `-m $SYNAPSE_WORKER` is prepended (default
                               synapse.app.homeserver); without any `--config-path`/`-c`
                               argument, `--config-path $SYNAPSE_CONFIG_PATH` is appended
                               (default /data/homeserver.yaml), which must exist.
    start.py generate          write a homeserver.yaml, log config and signing key for
                               $SYNAPSE_SERVER_NAME (SYNAPSE_REPORT_STATS required), like
                               the official image's `generate`.

jemalloc is preloaded when present, as in the official image. As the official image does
with gosu, Synapse runs as UID:GID from the environment (991:991 when unset) when started
as root, through util-linux's setpriv: so the test bed meets the same ownership, socket
mode and capability problems (it needs SETUID and SETGID) as the official image would.
"""

import os
import platform
import subprocess
import sys
from typing import List, MutableMapping, NoReturn, Tuple

PYTHON = "/opt/venv/bin/python"


def log(text: str) -> None:
    print(text, flush=True)


def error(text: str) -> NoReturn:
    print(text, file=sys.stderr, flush=True)
    sys.exit(2)


def config_dir(environ: MutableMapping[str, str]) -> str:
    return environ.get("SYNAPSE_CONFIG_DIR", "/data")


def config_path(environ: MutableMapping[str, str]) -> str:
    return environ.get("SYNAPSE_CONFIG_PATH", config_dir(environ) + "/homeserver.yaml")


def generate(environ: MutableMapping[str, str]) -> None:
    for name in ("SYNAPSE_SERVER_NAME", "SYNAPSE_REPORT_STATS"):
        if name not in environ:
            error(f"Environment variable '{name}' is mandatory in `generate` mode.")
    data_dir = environ.get("SYNAPSE_DATA_DIR", "/data")
    args = [
        PYTHON, "-m", "synapse.app.homeserver",
        "--server-name", environ["SYNAPSE_SERVER_NAME"],
        "--report-stats", environ["SYNAPSE_REPORT_STATS"],
        "--config-path", config_path(environ),
        "--config-directory", config_dir(environ),
        "--data-directory", data_dir,
        "--generate-config",
        "--open-private-ports",
    ]
    subprocess.run(args, check=True)


def run(args: List[str], environ: MutableMapping[str, str]) -> NoReturn:
    if "-m" not in args:
        args = ["-m", environ.get("SYNAPSE_WORKER", "synapse.app.homeserver")] + args

    jemalloc = "/usr/lib/%s-linux-gnu/libjemalloc.so.2" % (platform.machine(),)
    if os.path.isfile(jemalloc):
        environ["LD_PRELOAD"] = jemalloc
    else:
        log(f"Could not find {jemalloc}, will not use")

    if not any(arg.startswith(("--config-path", "-c")) for arg in args):
        path = config_path(environ)
        if not os.path.exists(path):
            error(
                f"Config file '{path}' does not exist. Create one (e.g. with the `generate` "
                "argument) or name an existing one with SYNAPSE_CONFIG_PATH."
            )
        args += ["--config-path", path]

    log("Starting synapse with args " + " ".join(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(*as_user([PYTHON] + args), environ)


def as_user(command: List[str]) -> Tuple[str, List[str]]:
    """The program and arguments that run `command` as the official image's user: UID:GID
    from the environment, 991:991 by default, when started as root; as is otherwise."""
    if os.getuid() != 0:
        return command[0], command
    uid = int(os.environ.get("UID", "991"))
    gid = int(os.environ.get("GID", "991"))
    setpriv = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return setpriv[0], setpriv + command


def main(argv: List[str], environ: MutableMapping[str, str]) -> None:
    mode = argv[1] if len(argv) > 1 else "run"
    if mode == "generate":
        generate(environ)
    elif mode == "run":
        run(argv[2:], environ)
    elif mode == "migrate_config":
        error("`migrate_config` is not supported by this test image; mount a homeserver.yaml.")
    else:
        error(f"Unknown execution mode '{mode}'")


if __name__ == "__main__":
    main(sys.argv, dict(os.environ))
