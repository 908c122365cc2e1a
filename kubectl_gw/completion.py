"""Shell completion through kubectl: the ``kubectl_complete-gw`` entry point.

Since kubectl 1.26, ``kubectl gw arg1 a<TAB>`` runs ``kubectl_complete-gw arg1 a`` (the last
argument is the word being completed, empty at a new word) and reads one candidate per line,
optionally followed by a Cobra directive line such as ``:4`` (no file completion). We reuse
click's completion engine with a ``kubectl`` "shell" whose arguments come from argv.
"""

from __future__ import annotations

import os
import sys

from click.shell_completion import CompletionItem, ShellComplete, add_completion_class

# Cobra ShellCompDirective values kubectl understands.
DIRECTIVE_DEFAULT = 0  # let the shell complete file names
DIRECTIVE_NO_FILE = 4


class KubectlComplete(ShellComplete):
    """Completion in kubectl's plugin protocol: argv in, bare candidates and a directive out."""

    name = "kubectl"
    source_template = ""  # kubectl finds us on PATH; there is no script to source

    def get_completion_args(self) -> tuple[list[str], str]:
        words = sys.argv[1:]
        if not words:
            return [], ""
        return words[:-1], words[-1]

    def format_completion(self, item: CompletionItem) -> str:
        return str(item.value)

    def complete(self) -> str:
        args, incomplete = self.get_completion_args()
        items = self.get_completions(args, incomplete)
        if any(item.type in ("file", "dir") for item in items):
            return f":{DIRECTIVE_DEFAULT}"
        lines = [self.format_completion(item) for item in items]
        lines.append(f":{DIRECTIVE_NO_FILE}")
        return "\n".join(lines)


add_completion_class(KubectlComplete)


def main() -> None:
    """Console-script entry point ``kubectl_complete-gw``."""
    from kubectl_gw import cli

    os.environ[cli.COMPLETE_VAR] = "kubectl_complete"
    sys.exit(cli.run(sys.argv[1:]))
