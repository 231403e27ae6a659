-- The processed readings that the transformer writes to the processed topic.
--
-- Column names are quoted so that they are exactly the JSON field names of a
-- processed reading (energy_pipeline.schema): unquoted, ksqlDB would uppercase
-- them to SENSORID, ENERGYCONSUMPTION, ..., and `timestamp` must be quoted anyway
-- because TIMESTAMP is a type name in ksqlDB. Every query that reads this stream
-- therefore quotes these columns too.
--
-- Event time is the reading's `timestamp`, not the Kafka record time, so that
-- windows group readings by when they were measured. The format accepts the
-- producer's canonical form (2026-01-05T11:00:00.000Z), no fraction, six
-- fraction digits, and +00:00 as well as Z.
CREATE STREAM IF NOT EXISTS ${stream_name} (
    `sensorId` VARCHAR,
    `area` VARCHAR,
    `energyConsumption` DOUBLE,
    `timestamp` VARCHAR,
    `readingId` VARCHAR,
    `isHighConsumption` BOOLEAN
) WITH (
    KAFKA_TOPIC = '${processed_topic}',
    VALUE_FORMAT = 'JSON',
    TIMESTAMP = '`timestamp`',
    TIMESTAMP_FORMAT = '${timestamp_format}'
);
