"""Mail: SMTP server and IMAP poller in, acknowledgements of receipt out."""

from adapters.mail.adapter import MailAdapter

__all__ = ["MailAdapter"]
