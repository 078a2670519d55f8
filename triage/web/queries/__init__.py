"""Read models of the console: each module answers one page's question, scoped to a viewer."""
