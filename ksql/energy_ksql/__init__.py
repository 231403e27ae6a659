"""energy-ksql: the pipeline's ksqlDB statements, rendered from the spec, planned
against what a ksqlDB server reports and applied through its REST API."""
