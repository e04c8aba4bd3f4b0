"""install views (being written)."""

from flask import Blueprint

blueprint = Blueprint("install", __name__)
