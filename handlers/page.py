"""page views (being written)."""

from flask import Blueprint

blueprint = Blueprint("page", __name__)
