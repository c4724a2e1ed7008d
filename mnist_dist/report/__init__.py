"""Reports of a scoring run: the report.json document and its renderings."""
