"""The session kernel: the core, sessions, turns, frames, commits."""
