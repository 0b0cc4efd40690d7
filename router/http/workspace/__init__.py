"""The agent workspace: server-rendered pages under /werkplek/ (docs/workspace.md)."""
