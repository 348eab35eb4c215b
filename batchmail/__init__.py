"""batchmail: a declarative, YAML-driven batch mailer."""

__version__ = "0.1.0"
