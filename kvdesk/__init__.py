"""kvdesk: a local-first desktop knowledge base that keeps values verbatim and derives keys."""

__version__ = "0.1.0"
