"""``python -m storage_node``: the same command as ``nixshard node``."""

from .cli import node_command

if __name__ == "__main__":
    node_command(prog_name="python -m storage_node")
