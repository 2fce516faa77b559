"""The testing kit and the store conformance suite (public through lash.testing)."""
