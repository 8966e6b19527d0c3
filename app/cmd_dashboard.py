"""`llmsim dashboard`: start the Streamlit what-if app (app/dashboard/Home.py) on a local port."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from hwmodels.errors import UserError

HOME = Path(__file__).resolve().parent / "dashboard" / "Home.py"


def streamlit_command(port: int, address: str, headless: bool, config: Path | None = None) -> list[str]:
    """The `streamlit run` argv for the dashboard; `config` preloads a scenario into the Simulate page."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port = {port}: must be a TCP port in 1..65535")
    if config is not None and not config.is_file():
        raise UserError(f"--config = {config}: file not found")
    cmd = [sys.executable, "-m", "streamlit", "run", str(HOME), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true" if headless else "false",
           "--browser.gatherUsageStats", "false"]
    if config is not None:
        cmd += ["--", "--config", str(config.resolve())]
    return cmd


def register(app: typer.Typer) -> None:
    @app.command()
    def dashboard(
        port: int = typer.Option(8501, "--port", "--server.port", help="TCP port to serve on"),
        address: str = typer.Option("127.0.0.1", "--address", "--server.address",
                                    help="interface to bind (default loopback only)"),
        headless: bool = typer.Option(True, "--headless/--open-browser", "--server.headless",
                                      help="do not open a browser window"),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON scenario to preload"),
        as_json: bool = typer.Option(False, "--json", help="print the URL and command as JSON, then serve"),
    ) -> None:
        """Start the Streamlit what-if dashboard (simulate, compare, plan, validate)."""
        try:
            import streamlit  # noqa: F401  (only checks that the dashboard extra is installed)
        except ModuleNotFoundError:
            raise UserError("the dashboard needs streamlit: pip install 'llmsim[dashboard]'") from None
        cmd = streamlit_command(port, address, headless, config)
        url = f"http://{address}:{port}"
        if as_json:
            typer.echo(json.dumps({"url": url, "command": cmd}))
        else:
            typer.echo(f"llmsim dashboard on {url} (Ctrl+C to stop)")
        env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
        sys.stdout.flush()
        # Become the Streamlit server (exec, not a child process): a signal to `llmsim dashboard`
        # (Ctrl+C, a supervisor's SIGTERM, a test's terminate()) then stops the server itself
        # instead of leaving an orphaned one listening.
        os.execvpe(cmd[0], cmd, env)
