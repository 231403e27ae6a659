-- Running totals per area since the stream's first reading.
--
-- A table aggregation: ksqlDB cannot replace it in place, so a change to this
-- statement is applied as DROP TABLE then CREATE TABLE.
-- High readings are counted from the transformer's flag, so the threshold lives
-- in one place (the transformer) and is not repeated here.
CREATE TABLE IF NOT EXISTS ${totals_table_name}
WITH (KAFKA_TOPIC = '${totals_topic}', VALUE_FORMAT = 'JSON') AS
SELECT
    `area`,
    COUNT(*) AS READINGS,
    AVG(`energyConsumption`) AS AVG_CONSUMPTION,
    MIN(`energyConsumption`) AS MIN_CONSUMPTION,
    MAX(`energyConsumption`) AS MAX_CONSUMPTION,
    SUM(`energyConsumption`) AS TOTAL_ENERGY,
    SUM(CASE WHEN `isHighConsumption` THEN 1 ELSE 0 END) AS HIGH_READINGS
FROM ${stream_name}
GROUP BY `area`
EMIT CHANGES;
