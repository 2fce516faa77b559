"""Plain data and the services plugins see: the nouns of the hook contract."""
