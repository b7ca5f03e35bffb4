package dev.braid.flink;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code braid_event_time_error(json, text)}: the dead-letter reason of a time field's JSON
 * value, {@code wrong_type} or {@code naive_timestamp}, or NULL when it is absent or a valid
 * time (the embedded runner's reasons, see {@link IsoTime}).
 */
public class EventTimeError extends ScalarFunction {

    public String eval(String json, String text) {
        IsoTime t = IsoTime.read(json, text);
        return t == null ? null : t.error;
    }
}
