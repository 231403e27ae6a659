-- Per-area figures in tumbling windows (one hour by default), aligned to the
-- epoch in UTC and computed on the readings' event time.
--
-- WINDOWSTART and WINDOWEND are copied into the value so that consumers of the
-- sink topic see the window without decoding the windowed key.
-- A windowed aggregation: ksqlDB cannot replace it in place, so a new window
-- size is applied as DROP TABLE then CREATE TABLE.
CREATE TABLE IF NOT EXISTS ${windowed_table_name}
WITH (KAFKA_TOPIC = '${windowed_topic}', VALUE_FORMAT = 'JSON') AS
SELECT
    `area`,
    WINDOWSTART AS WINDOW_START,
    WINDOWEND AS WINDOW_END,
    COUNT(*) AS READINGS,
    AVG(`energyConsumption`) AS AVG_CONSUMPTION,
    SUM(CASE WHEN `isHighConsumption` THEN 1 ELSE 0 END) AS HIGH_READINGS
FROM ${stream_name}
WINDOW TUMBLING (SIZE ${window_size})
GROUP BY `area`
EMIT CHANGES;
