"""The counter: pass desk, device API, operator pages, print queue, ticket and card templates."""
