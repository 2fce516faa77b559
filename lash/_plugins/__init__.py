"""Plugins: discovery, ordering, options, host config, registration, dispatch, composition."""
