"""``python -m nixshard`` = the ``nixshard`` command."""

from .cli import main

main()
