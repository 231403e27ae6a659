"""energy-pipeline services: the reading schema, topics, Kafka settings, producer,
transformer and the local runner."""
