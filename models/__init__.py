"""ML components behind small interfaces (see models.interfaces); never imports db or app."""
