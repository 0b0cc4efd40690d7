"""Channel adapters: thin translators from a channel's native format into a Contact."""
