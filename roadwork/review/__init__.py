"""Human review of captured images: a local web page, labels into a manifest `roadwork train` reads."""

from roadwork.review.app import create_review_app, review_main
from roadwork.review.store import LABELS_FILE, ReviewError, ReviewStore

__all__ = ["LABELS_FILE", "ReviewError", "ReviewStore", "create_review_app", "review_main"]
