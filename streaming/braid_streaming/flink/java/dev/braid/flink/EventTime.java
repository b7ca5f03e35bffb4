package dev.braid.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code braid_event_time(json, text)}: epoch ms of a time field's JSON value, or NULL when
 * the value is absent or refused (see {@link IsoTime}; {@link EventTimeError} says why).
 *
 * <p>Flink's TRY_CAST reads integers only, so the job parses ISO-8601 strings with this UDF to
 * accept exactly the values braid's embedded runner accepts (DESIGN 4.8).
 */
public class EventTime extends ScalarFunction {

    public @DataTypeHint("BIGINT") Long eval(String json, String text) {
        IsoTime t = IsoTime.read(json, text);
        return t == null || t.error != null ? null : t.millis;
    }
}
