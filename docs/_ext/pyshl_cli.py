"""A Sphinx directive, ``pyshl-cli``, that prints the help of the pyshl command
and of each subcommand from the parser itself, so the CLI reference cannot
drift from the code."""
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


class PyshlCli(SphinxDirective):
    def run(self):
        from pyshl.__main__ import parser

        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"        # the same line breaks on every terminal
        try:
            main_parser = parser()
            sections = [("pyshl", main_parser.format_help())]
            subcommands = next(action for action in main_parser._actions
                               if action.dest == "command")
            for name, subparser in subcommands.choices.items():
                sections.append(("pyshl " + name, subparser.format_help()))
        finally:
            if columns is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = columns
        result = []
        for title, text in sections:
            section = nodes.section(ids=[nodes.make_id("cli " + title)])
            section += nodes.title(text=title)
            section += nodes.literal_block(text, text, language="text")
            result.append(section)
        return result


def setup(app):
    app.add_directive("pyshl-cli", PyshlCli)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
