"""One ConfigurableResource per external system, each with a local twin of the same interface."""
