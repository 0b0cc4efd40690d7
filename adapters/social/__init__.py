"""Social media: Meta webhooks for WhatsApp Cloud API, Messenger and Instagram."""

from adapters.social.adapter import SocialAdapter

__all__ = ["SocialAdapter"]
