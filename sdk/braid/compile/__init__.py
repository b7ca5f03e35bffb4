"""Compilers: the IR rendered per engine through sqlglot trees (DESIGN §2, §5)."""
