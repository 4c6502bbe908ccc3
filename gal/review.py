"""`gal review RUN`: a local page to pick new references for a round by hand (strategy human).

Starlette app served by uvicorn. It binds 127.0.0.1 unless told otherwise, every request must carry the
random token of the URL it prints, it serves only files inside the run folder, and a submission is checked
against the pending round before it goes into the ledger (in one transaction).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gal.errors import GalError
from gal.ledger import Ledger

TEMPLATES = Environment(loader=PackageLoader("gal", "templates"), autoescape=select_autoescape())


def pending_round(ledger: Ledger) -> int | None:
    """The round waiting for a person: scored samples, not closed, nothing submitted yet."""
    config = ledger.get("config") or {}
    if config.get("strategy") != "human":
        return None
    for r in reversed(ledger.rounds()):
        if not r["closed"] and ledger.samples(r["round"]) and ledger.review(r["round"]) is None:
            return r["round"]
    return None


def sample_id(anchor_idx: int, j: int) -> str:
    return f"a{anchor_idx}-j{j}"


MAX_BODY = 1 << 20


def create_app(run_dir: Path, token: str) -> Starlette:
    run_dir = Path(run_dir).resolve()

    def authorized(request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-gal-token") or ""
        return secrets.compare_digest(given.encode(), token.encode())

    def page(request: Request) -> Response:
        ledger = Ledger(run_dir)
        try:
            r = pending_round(ledger)
            anchors = {a.idx: a for a in ledger.anchors()}
            groups = []
            if r is not None:
                by_anchor: dict[int, list] = {}
                for s in ledger.samples(r):
                    by_anchor.setdefault(s.anchor_idx, []).append(s)
                groups = [{"anchor": anchors[a], "samples": [{"id": sample_id(s.anchor_idx, s.j), "path": s.path,
                                                               "sim_anchor": s.sim_anchor, "overfit": s.overfit}
                                                              for s in ss]} for a, ss in sorted(by_anchor.items())]
            html = TEMPLATES.get_template("review.html").render(
                round=r, groups=groups, token=token, config=ledger.get("config"), run=run_dir.name)
        finally:
            ledger.close()
        return HTMLResponse(html)

    def file(request: Request) -> Response:
        relative = request.path_params["path"]
        if any(ord(ch) < 32 for ch in relative) or len(relative) > 1000:  # a NUL byte cannot name a file
            return Response("not found", status_code=404)
        try:
            target = (run_dir / relative).resolve()  # follows symlinks: a link out of the run is refused below
        except (OSError, ValueError):
            return Response("not found", status_code=404)
        if Path(relative).is_absolute() or not target.is_relative_to(run_dir) or not target.is_file():
            return Response("not found", status_code=404)
        if target.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp"}:
            return Response("not found", status_code=404)
        return FileResponse(target)

    async def submit(request: Request) -> Response:
        data = b""
        async for chunk in request.stream():  # a review is a few KB: a huge body is refused, not read into memory
            data += chunk
            if len(data) > MAX_BODY:
                return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413)
        try:
            body = json.loads(data)
            accepted = list(body.get("accepted", []))
            round_ = int(body["round"])
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            return JSONResponse({"error": "expected JSON {round, accepted: [ids]}"}, status_code=400)
        ledger = Ledger(run_dir)
        try:
            pending = pending_round(ledger)
            if pending is None or round_ != pending:
                return JSONResponse({"error": f"round {round_} is not waiting for review"}, status_code=409)
            known = {sample_id(s.anchor_idx, s.j): (s.anchor_idx, s.j) for s in ledger.samples(round_)}
            unknown = [i for i in accepted if not isinstance(i, str) or i not in known]
            if unknown:
                return JSONResponse({"error": f"unknown sample id(s) for round {round_}: {unknown[:3]}"}, status_code=400)
            try:
                ledger.submit_review(round_, [known[i] for i in accepted])
            except ValueError as e:
                return JSONResponse({"error": str(e)}, status_code=409)
        finally:
            ledger.close()
        return JSONResponse({"ok": True, "round": round_, "accepted": len(accepted),
                             "next": "run the same `gal run` command again to continue"})

    async def guard(scope, receive, send):
        request = Request(scope)
        if scope["type"] == "http" and not authorized(request):
            await Response("forbidden: this page needs the token of the URL `gal review` printed",
                           status_code=403)(scope, receive, send)
            return
        await app(scope, receive, send)

    app = Starlette(routes=[Route("/", page), Route("/file/{path:path}", file), Route("/submit", submit, methods=["POST"])])
    return guard


def check_address(host: str, port: int) -> None:
    """That the page can listen there, said in one line before the server starts (uvicorn would exit with its
    own log line)."""
    import socket

    if not 0 <= port <= 65535:
        raise GalError(f"--port {port}: expected 0 to 65535 (0: any free port)")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except (OSError, OverflowError) as e:
        raise GalError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); expected a free port "
                       "on an address of this machine (--port 0: any free port)") from None


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, log=print) -> None:
    import uvicorn

    token = token or secrets.token_urlsafe(18)
    check_address(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"gal: warning: --host {host}: the review page is reachable from other machines; anyone with the URL can submit")
    app = create_app(run_dir, token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)

    import threading

    def announce():  # print the URL once the socket listens (port 0: the one the OS chose)
        while not server.started:
            threading.Event().wait(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        log(f"review page: http://{host}:{bound}/?token={token}", flush=True)
        log("submit the page, then run the same `gal run` command to continue; Ctrl-C stops the server", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
