"""Example images bundled with redgraph for `redgraph demo` (held-out synthetic test items)."""
