"""The ``nixshard`` command: one entry point for node, push, serve, network and demo."""
