"""Trusting the context: rebuild views from the history, compare them with the stores (verify)."""
