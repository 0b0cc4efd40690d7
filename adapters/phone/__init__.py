"""Phone notes: what a KCC agent logs after a call; its outcome (answered, transferred, colleague
unavailable) is carried out by the router's case work."""

from adapters.phone.adapter import PhoneNote, PhoneNotesAdapter

__all__ = ["PhoneNote", "PhoneNotesAdapter"]
