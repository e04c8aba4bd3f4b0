"""`b24app serve`: the web app on Flask's development server (production: gunicorn
'handlers:create_app()')."""

from __future__ import annotations

import click

from handlers import create_app


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--debug", is_flag=True, help="Flask debug mode: reloader and tracebacks (never in production)."
)
def serve(host: str, port: int, debug: bool) -> None:
    """Serve /install, /events, /app and /healthz for development.

    Bitrix24 must reach B24APP_PUBLIC_URL (a tunnel to this port); settings come from the
    environment or a .env file. Production: gunicorn 'handlers:create_app()'.
    """
    app = create_app()
    app.run(host=host, port=port, debug=debug, use_reloader=debug)
