"""The pure kernel: errors, codes, facts, the decision, messages, configuration tables.

It imports nothing else of the project, and everything may import it.
"""
