"""events views (being written)."""

from flask import Blueprint

blueprint = Blueprint("events", __name__)
