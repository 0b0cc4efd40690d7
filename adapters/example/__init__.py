"""The worked example of docs/adapters.md: a counter-visit adapter built on the public interface only."""

from adapters.example.counter import CounterVisitAdapter

__all__ = ["CounterVisitAdapter"]
