-- braid project fraud: Flink job (compiled by braid; do not edit)

-- skipped view user_profile: batch source 'user_profiles', computed by DuckDB only

SET 'pipeline.name' = 'braid-fraud';

SET 'execution.runtime-mode' = 'streaming';

SET 'table.local-time-zone' = 'UTC';

SET 'parallelism.default' = '1';

SET 'table.exec.mini-batch.enabled' = 'true';

SET 'table.exec.mini-batch.allow-latency' = '1 s';

SET 'table.exec.mini-batch.size' = '5000';

SET 'table.exec.state.ttl' = '176400000 ms';

SET 'execution.checkpointing.interval' = '1000 ms';

SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';

SET 'restart-strategy.type' = 'exponential-delay';

SET 'restart-strategy.exponential-delay.initial-backoff' = '1 s';

SET 'restart-strategy.exponential-delay.max-backoff' = '1 min';

SET 'restart-strategy.exponential-delay.backoff-multiplier' = '2.0';

SET 'restart-strategy.exponential-delay.reset-backoff-threshold' = '1 h';

SET 'restart-strategy.exponential-delay.attempts-before-reset-backoff' = '10';

CREATE TEMPORARY FUNCTION IF NOT EXISTS `braid_latest` AS 'dev.braid.flink.Latest' LANGUAGE JAVA;

CREATE TEMPORARY FUNCTION IF NOT EXISTS `braid_welford` AS 'dev.braid.flink.Welford' LANGUAGE JAVA;

CREATE TEMPORARY FUNCTION IF NOT EXISTS `braid_exact_sum` AS 'dev.braid.flink.ExactSum' LANGUAGE JAVA;

CREATE TEMPORARY FUNCTION IF NOT EXISTS `braid_event_time` AS 'dev.braid.flink.EventTime' LANGUAGE JAVA;

CREATE TEMPORARY FUNCTION IF NOT EXISTS `braid_event_time_error` AS 'dev.braid.flink.EventTimeError' LANGUAGE JAVA;

CREATE TABLE `braid_dlq__fraud` (
  `reason` STRING,
  `source` STRING,
  `topic` STRING,
  `partition` INT,
  `offset` BIGINT,
  `payload` STRING
) WITH (
  'connector' = 'kafka',
  'topic' = 'braid.fraud.dlq',
  'properties.bootstrap.servers' = 'localhost:9092',
  'key.format' = 'json',
  'key.fields' = 'topic;partition;offset',
  'value.format' = 'json',
  'value.fields-include' = 'ALL',
  'sink.delivery-guarantee' = 'at-least-once'
);

CREATE TABLE `braid_src__transactions` (
  `_k_payload` STRING,
  `_k_partition` INT METADATA FROM 'partition' VIRTUAL,
  `_k_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
  `_k_timestamp` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `_k_proctime` AS PROCTIME()
) WITH (
  'connector' = 'kafka',
  'topic' = 'transactions',
  'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'raw',
  'raw.charset' = 'UTF-8',
  'scan.startup.mode' = 'earliest-offset'
);

CREATE TABLE `braid_tiles__user_txn_stats` (
  `user_id` BIGINT NOT NULL,
  `hop` BIGINT NOT NULL,
  `tile_start` BIGINT NOT NULL,
  `amount__count__n` BIGINT,
  `amount__max__v` DOUBLE,
  `amount__mean__s` DOUBLE,
  `amount__mean__n` BIGINT,
  `amount__stddev__n` BIGINT,
  `amount__stddev__mean` DOUBLE,
  `amount__stddev__m2` DOUBLE,
  `amount__sum__s` DOUBLE,
  PRIMARY KEY (`user_id`, `hop`, `tile_start`) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'braid.fraud.user_txn_stats.tiles',
  'properties.bootstrap.servers' = 'localhost:9092',
  'key.format' = 'json',
  'value.format' = 'json',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.buffer-flush.max-rows' = '1000',
  'sink.buffer-flush.interval' = '1 s'
);

CREATE TABLE `braid_tiles__merchant_risk` (
  `merchant_id` BIGINT NOT NULL,
  `hop` BIGINT NOT NULL,
  `tile_start` BIGINT NOT NULL,
  `_rows__count__n` BIGINT,
  `amount__sum__s` DOUBLE,
  `amount__last__ts` BIGINT,
  `amount__last__ct` BIGINT,
  `amount__last__v` DOUBLE,
  PRIMARY KEY (`merchant_id`, `hop`, `tile_start`) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'braid.fraud.merchant_risk.tiles',
  'properties.bootstrap.servers' = 'localhost:9092',
  'key.format' = 'json',
  'value.format' = 'json',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.buffer-flush.max-rows' = '1000',
  'sink.buffer-flush.interval' = '1 s'
);

CREATE TEMPORARY VIEW `transactions__json` AS
SELECT `_k_payload`, `_k_partition`, `_k_offset`, CAST(TIMESTAMPDIFF(MINUTE, TO_TIMESTAMP_LTZ(0, 3), `_k_timestamp`) AS BIGINT) * 60000 + EXTRACT(SECOND FROM `_k_timestamp`) * 1000 + EXTRACT(MILLISECOND FROM `_k_timestamp`) AS `_k_timestamp_ms`, `_k_proctime`, `_k_payload` IS JSON OBJECT AS `_k_ok`, JSON_QUERY(`_k_payload`, '$.txn_id' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__txn_id`, JSON_VALUE(`_k_payload`, '$.txn_id') AS `_s__txn_id`, JSON_QUERY(`_k_payload`, '$.user_id' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__user_id`, JSON_VALUE(`_k_payload`, '$.user_id') AS `_s__user_id`, JSON_QUERY(`_k_payload`, '$.merchant_id' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__merchant_id`, JSON_VALUE(`_k_payload`, '$.merchant_id') AS `_s__merchant_id`, JSON_QUERY(`_k_payload`, '$.amount' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__amount`, JSON_VALUE(`_k_payload`, '$.amount') AS `_s__amount`, JSON_QUERY(`_k_payload`, '$.country' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__country`, JSON_VALUE(`_k_payload`, '$.country') AS `_s__country`, JSON_QUERY(`_k_payload`, '$.is_online' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__is_online`, JSON_VALUE(`_k_payload`, '$.is_online') AS `_s__is_online`, JSON_QUERY(`_k_payload`, '$.ts' WITH ARRAY WRAPPER NULL ON ERROR) AS `_q__ts`, JSON_VALUE(`_k_payload`, '$.ts') AS `_s__ts` FROM `braid_src__transactions`;

CREATE TEMPORARY VIEW `transactions__typed` AS
SELECT `_k_payload`, `_k_partition`, `_k_offset`, `_k_timestamp_ms`, `_k_proctime`, CASE WHEN REGEXP(`_q__txn_id`, '^\["') THEN `_s__txn_id` END AS `txn_id`, CASE WHEN (REGEXP(`_q__user_id`, '^\[-?[0-9]+\]$') AND NOT (TRY_CAST(`_s__user_id` AS BIGINT) IS NULL)) THEN TRY_CAST(`_s__user_id` AS BIGINT) END AS `user_id`, CASE WHEN (REGEXP(`_q__merchant_id`, '^\[-?[0-9]+\]$') AND NOT (TRY_CAST(`_s__merchant_id` AS BIGINT) IS NULL)) THEN TRY_CAST(`_s__merchant_id` AS BIGINT) END AS `merchant_id`, CASE WHEN REGEXP(`_q__amount`, '^\[-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\]$') THEN TRY_CAST(`_s__amount` AS DOUBLE) END AS `amount`, CASE WHEN REGEXP(`_q__country`, '^\["') THEN `_s__country` END AS `country`, CASE WHEN `_q__is_online` IN ('[true]', '[false]') THEN `_s__is_online` = 'true' END AS `is_online`, BRAID_EVENT_TIME(`_q__ts`, `_s__ts`) AS `ts`, CASE WHEN NOT (`_k_ok`) THEN 'malformed_json' WHEN (`_q__ts` IS NULL OR `_q__user_id` IS NULL OR `_q__merchant_id` IS NULL) THEN 'missing_field' WHEN (NOT (`_q__txn_id` IS NULL) AND NOT REGEXP(`_q__txn_id`, '^\["') OR NOT (`_q__user_id` IS NULL) AND NOT (REGEXP(`_q__user_id`, '^\[-?[0-9]+\]$') AND NOT (TRY_CAST(`_s__user_id` AS BIGINT) IS NULL)) OR NOT (`_q__merchant_id` IS NULL) AND NOT (REGEXP(`_q__merchant_id`, '^\[-?[0-9]+\]$') AND NOT (TRY_CAST(`_s__merchant_id` AS BIGINT) IS NULL)) OR NOT (`_q__amount` IS NULL) AND NOT REGEXP(`_q__amount`, '^\[-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\]$') OR NOT (`_q__country` IS NULL) AND NOT REGEXP(`_q__country`, '^\["') OR NOT (`_q__is_online` IS NULL) AND NOT `_q__is_online` IN ('[true]', '[false]') OR BRAID_EVENT_TIME_ERROR(`_q__ts`, `_s__ts`) = 'wrong_type') THEN 'wrong_type' WHEN (BRAID_EVENT_TIME_ERROR(`_q__ts`, `_s__ts`) = 'naive_timestamp') THEN 'naive_timestamp' WHEN (NOT (CASE WHEN REGEXP(`_q__amount`, '^\[-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\]$') THEN TRY_CAST(`_s__amount` AS DOUBLE) END IS NULL) AND NOT (CASE WHEN REGEXP(`_q__amount`, '^\[-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\]$') THEN TRY_CAST(`_s__amount` AS DOUBLE) END - CASE WHEN REGEXP(`_q__amount`, '^\[-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\]$') THEN TRY_CAST(`_s__amount` AS DOUBLE) END = 0)) THEN 'non_finite' WHEN BRAID_EVENT_TIME(`_q__ts`, `_s__ts`) > `_k_timestamp_ms` + 300000 THEN 'future' END AS `_k_reason` FROM `transactions__json`;

CREATE TEMPORARY VIEW `transactions__ordered` AS
SELECT `_k_payload`, `_k_partition`, `_k_offset`, `_k_timestamp_ms`, `_k_proctime`, `txn_id`, `user_id`, `merchant_id`, `amount`, `country`, `is_online`, `ts`, MAX(`ts`) OVER (PARTITION BY `_k_partition` ORDER BY `_k_proctime` ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS `_k_max_ts` FROM `transactions__typed` WHERE `_k_reason` IS NULL;

CREATE TEMPORARY VIEW `transactions__events` AS
SELECT `_k_payload`, `_k_partition`, `_k_offset`, `_k_timestamp_ms`, `_k_proctime`, `txn_id`, `user_id`, `merchant_id`, `amount`, `country`, `is_online`, `ts` FROM `transactions__ordered` WHERE NOT (`ts` < `_k_max_ts` - 3600000);

EXECUTE STATEMENT SET BEGIN

INSERT INTO `braid_dlq__fraud`
SELECT `_k_reason` AS `reason`, 'transactions' AS `source`, 'transactions' AS `topic`, `_k_partition` AS `partition`, `_k_offset` AS `offset`, `_k_payload` AS `payload` FROM `transactions__typed` WHERE NOT (`_k_reason` IS NULL) UNION ALL SELECT 'late' AS `reason`, 'transactions' AS `source`, 'transactions' AS `topic`, `_k_partition` AS `partition`, `_k_offset` AS `offset`, `_k_payload` AS `payload` FROM `transactions__ordered` WHERE `ts` < `_k_max_ts` - 3600000;

INSERT INTO `braid_tiles__user_txn_stats`
SELECT `user_id`, CAST(60000 AS BIGINT) AS `hop`, `tile_start`, NULLIF(COUNT(`amount`), 0) AS `amount__count__n`, MAX(`amount`) AS `amount__max__v`, SUM(CAST(`amount` AS DOUBLE)) AS `amount__mean__s`, NULLIF(COUNT(`amount`), 0) AS `amount__mean__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).n AS `amount__stddev__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).mean AS `amount__stddev__mean`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).m2 AS `amount__stddev__m2`, CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s` FROM (SELECT *, `_ts` - (MOD((MOD(`_ts`, 60000) + 60000), 60000)) AS `tile_start` FROM (SELECT `user_id`, `ts` AS `_ts`, (-9223372036854775807 - 1) AS `_ct`, CAST(`amount` AS DOUBLE) AS `amount` FROM `transactions__events` WHERE NOT `user_id` IS NULL AND NOT `ts` IS NULL AND (`amount` IS NULL OR `amount` - `amount` = 0)) AS e) AS t GROUP BY `user_id`, `tile_start`;

INSERT INTO `braid_tiles__user_txn_stats`
SELECT `user_id`, CAST(300000 AS BIGINT) AS `hop`, `tile_start`, NULLIF(COUNT(`amount`), 0) AS `amount__count__n`, MAX(`amount`) AS `amount__max__v`, SUM(CAST(`amount` AS DOUBLE)) AS `amount__mean__s`, NULLIF(COUNT(`amount`), 0) AS `amount__mean__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).n AS `amount__stddev__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).mean AS `amount__stddev__mean`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).m2 AS `amount__stddev__m2`, CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s` FROM (SELECT *, `_ts` - (MOD((MOD(`_ts`, 300000) + 300000), 300000)) AS `tile_start` FROM (SELECT `user_id`, `ts` AS `_ts`, (-9223372036854775807 - 1) AS `_ct`, CAST(`amount` AS DOUBLE) AS `amount` FROM `transactions__events` WHERE NOT `user_id` IS NULL AND NOT `ts` IS NULL AND (`amount` IS NULL OR `amount` - `amount` = 0)) AS e) AS t GROUP BY `user_id`, `tile_start`;

INSERT INTO `braid_tiles__user_txn_stats`
SELECT `user_id`, CAST(3600000 AS BIGINT) AS `hop`, `tile_start`, NULLIF(COUNT(`amount`), 0) AS `amount__count__n`, MAX(`amount`) AS `amount__max__v`, SUM(CAST(`amount` AS DOUBLE)) AS `amount__mean__s`, NULLIF(COUNT(`amount`), 0) AS `amount__mean__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).n AS `amount__stddev__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).mean AS `amount__stddev__mean`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).m2 AS `amount__stddev__m2`, CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s` FROM (SELECT *, `_ts` - (MOD((MOD(`_ts`, 3600000) + 3600000), 3600000)) AS `tile_start` FROM (SELECT `user_id`, `ts` AS `_ts`, (-9223372036854775807 - 1) AS `_ct`, CAST(`amount` AS DOUBLE) AS `amount` FROM `transactions__events` WHERE NOT `user_id` IS NULL AND NOT `ts` IS NULL AND (`amount` IS NULL OR `amount` - `amount` = 0)) AS e) AS t GROUP BY `user_id`, `tile_start`;

INSERT INTO `braid_tiles__user_txn_stats`
SELECT `user_id`, CAST(86400000 AS BIGINT) AS `hop`, `tile_start`, NULLIF(COUNT(`amount`), 0) AS `amount__count__n`, MAX(`amount`) AS `amount__max__v`, SUM(CAST(`amount` AS DOUBLE)) AS `amount__mean__s`, NULLIF(COUNT(`amount`), 0) AS `amount__mean__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).n AS `amount__stddev__n`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).mean AS `amount__stddev__mean`, (BRAID_WELFORD(CAST(`amount` AS DOUBLE))).m2 AS `amount__stddev__m2`, CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s` FROM (SELECT *, `_ts` - (MOD((MOD(`_ts`, 86400000) + 86400000), 86400000)) AS `tile_start` FROM (SELECT `user_id`, `ts` AS `_ts`, (-9223372036854775807 - 1) AS `_ct`, CAST(`amount` AS DOUBLE) AS `amount` FROM `transactions__events` WHERE NOT `user_id` IS NULL AND NOT `ts` IS NULL AND (`amount` IS NULL OR `amount` - `amount` = 0)) AS e) AS t GROUP BY `user_id`, `tile_start`;

INSERT INTO `braid_tiles__merchant_risk`
SELECT `merchant_id`, CAST(300000 AS BIGINT) AS `hop`, `tile_start`, NULLIF(COUNT(*), 0) AS `_rows__count__n`, CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s`, CAST(NULL AS BIGINT) AS `amount__last__ts`, CAST(NULL AS BIGINT) AS `amount__last__ct`, CAST(NULL AS DOUBLE) AS `amount__last__v` FROM (SELECT *, `_ts` - (MOD((MOD(`_ts`, 300000) + 300000), 300000)) AS `tile_start` FROM (SELECT `merchant_id`, `ts` AS `_ts`, (-9223372036854775807 - 1) AS `_ct`, CAST(`amount` AS DOUBLE) AS `amount` FROM `transactions__events` WHERE NOT `merchant_id` IS NULL AND NOT `ts` IS NULL AND (`amount` IS NULL OR `amount` - `amount` = 0) AND (`is_online` AND `amount` >= 50)) AS e) AS t GROUP BY `merchant_id`, `tile_start`;

INSERT INTO `braid_tiles__merchant_risk`
SELECT `merchant_id`, CAST(3600000 AS BIGINT) AS `hop`, `tile_start`, NULLIF(COUNT(*), 0) AS `_rows__count__n`, CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s`, (BRAID_LATEST(`_ts`, `_ct`, `amount`)).ts AS `amount__last__ts`, (BRAID_LATEST(`_ts`, `_ct`, `amount`)).ct AS `amount__last__ct`, (BRAID_LATEST(`_ts`, `_ct`, `amount`)).v AS `amount__last__v` FROM (SELECT *, `_ts` - (MOD((MOD(`_ts`, 3600000) + 3600000), 3600000)) AS `tile_start` FROM (SELECT `merchant_id`, `ts` AS `_ts`, (-9223372036854775807 - 1) AS `_ct`, CAST(`amount` AS DOUBLE) AS `amount` FROM `transactions__events` WHERE NOT `merchant_id` IS NULL AND NOT `ts` IS NULL AND (`amount` IS NULL OR `amount` - `amount` = 0) AND (`is_online` AND `amount` >= 50)) AS e) AS t GROUP BY `merchant_id`, `tile_start`;

END;
