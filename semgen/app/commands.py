"""CLI: ``semgen app`` (the local web app; needs the ``app`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import SemgenError

#: Hosts that keep the app on this machine.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser(
        "app", help="a local web app: generator playground, dataset browser, results, classify",
        description="Serve the semgen web app (Gradio) on this machine: design generators with live "
                    "images, browse dataset dirs, read ablation and run results, classify uploads. "
                    'Needs the app extra: pip install -c constraints.txt -e ".[app]".')
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="dataset dir or ImageFolder to offer in the browser (repeatable; default: none)")
    p.add_argument("--run", action="append", default=[], metavar="RUN",
                   help="run dir or ablation output dir to offer in results and classify (repeatable; default: none)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 shows the app "
                        "and the files it can open to the network)")
    p.add_argument("--class", dest="cls", default="bridge", metavar="CLASS",
                   help="class the playground opens with (default bridge)")
    p.add_argument("--max-upload-mb", type=float, default=20.0,
                   help="largest image the classify page accepts, in MB (default 20)")
    p.set_defaults(func=_app)


def _app(args) -> int:
    from . import require_gradio

    if not 1 <= args.port <= 65535:
        raise SemgenError(f"--port must be in [1, 65535], got {args.port}")
    if not 0 < args.max_upload_mb <= 2000:
        raise SemgenError(f"--max-upload-mb must be in (0, 2000], got {args.max_upload_mb:g}")
    from ..generators.procedural import create_generator

    create_generator(args.cls)  # an unknown class is one line here, not a broken page
    for d in args.data + args.run:  # a missing dir is said on its page too; say it here first
        if not Path(d).exists():
            print(f"semgen: warning: {d} does not exist (its page will say so)", file=sys.stderr)
    if args.host not in LOCAL_HOSTS:
        print(f"semgen: warning: serving on {args.host}: anyone who can reach this machine can use the app "
              "and open the folders it can read", file=sys.stderr)
    require_gradio()
    _check_port(args.host, args.port)
    from . import serve

    print(f"semgen app on http://{_url_host(args.host)}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    serve(data=args.data, runs=args.run, host=args.host, port=args.port, block=True, default_class=args.cls,
          max_upload_bytes=int(args.max_upload_mb * 1e6))
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_port(host: str, port: int) -> None:
    """A one-line error for a port in use (Gradio would otherwise try others, or trace back)."""
    import socket

    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise SemgenError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port") from None
