"""lash's builtin plugins: ordinary plugins that use only lash's public API."""
