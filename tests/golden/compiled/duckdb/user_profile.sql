-- braid view user_profile (namespace user_profile__24baae646903), DuckDB.
-- Run with SET TimeZone='UTC'. Each statement returns one table:
-- tiles: entity keys, tile_start (epoch ms), partial states per the algebra table;
-- rows: entity keys, _ts, _ct (epoch ms), projections.
SET TimeZone='UTC';
-- rows
SELECT "user_id", "_ts", "_ct", "p__age" AS "age", "p__credit_limit" AS "credit_limit", "p__is_premium" AS "is_premium", "p__limit_per_year_of_age" AS "limit_per_year_of_age", "p__home_country" AS "home_country" FROM (SELECT * FROM (SELECT "user_id", EPOCH_MS(CAST("updated_at" AS TIMESTAMPTZ)) AS "_ts", COALESCE(EPOCH_MS(CAST("loaded_at" AS TIMESTAMPTZ)), (-9223372036854775807 - 1)) AS "_ct", "age" AS "p__age", "credit_limit" AS "p__credit_limit", "account_tier" = 'premium' AS "p__is_premium", CAST("credit_limit" AS DOUBLE) / NULLIF("age", 0) AS "p__limit_per_year_of_age", "country" AS "p__home_country" FROM READ_PARQUET('data/user_profiles/*.parquet', union_by_name = TRUE) WHERE NOT "user_id" IS NULL AND NOT "updated_at" IS NULL AND ("credit_limit" IS NULL OR "credit_limit" - "credit_limit" = 0)) AS ev) AS e;
