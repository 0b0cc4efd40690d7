"""Web form: the municipality's own contact form, JSON or form-encoded, with a receipt for the resident."""

from adapters.webform.adapter import WebformAdapter, WebformSubmission

__all__ = ["WebformAdapter", "WebformSubmission"]
