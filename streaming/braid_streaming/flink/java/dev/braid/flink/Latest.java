package dev.braid.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * braid's last partial (ts, ct, v): the greatest triple by (ts, ct, v) (DESIGN 4.1, 4.3).
 *
 * <p>Flink's LAST_VALUE follows arrival order, not event time, so braid aggregates with this
 * UDAF. One overload per value type braid knows (BIGINT, DOUBLE, STRING, BOOLEAN). Rows with a
 * NULL value are ignored; with no input the result is NULL (braid's canonical empty partial).
 * Strings compare by code point, i.e. bytewise in UTF-8 like Python's str ordering.
 */
@FunctionHint(
        input = {@DataTypeHint("BIGINT"), @DataTypeHint("BIGINT"), @DataTypeHint("BIGINT")},
        accumulator = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v BIGINT>"),
        output = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v BIGINT>"))
@FunctionHint(
        input = {@DataTypeHint("BIGINT"), @DataTypeHint("BIGINT"), @DataTypeHint("DOUBLE")},
        accumulator = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v DOUBLE>"),
        output = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v DOUBLE>"))
@FunctionHint(
        input = {@DataTypeHint("BIGINT"), @DataTypeHint("BIGINT"), @DataTypeHint("STRING")},
        accumulator = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v STRING>"),
        output = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v STRING>"))
@FunctionHint(
        input = {@DataTypeHint("BIGINT"), @DataTypeHint("BIGINT"), @DataTypeHint("BOOLEAN")},
        accumulator = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v BOOLEAN>"),
        output = @DataTypeHint("ROW<ts BIGINT, ct BIGINT, v BOOLEAN>"))
public class Latest extends AggregateFunction<Row, Row> {

    @Override
    public Row createAccumulator() {
        return Row.of(null, null, null);
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static int compareValues(Object a, Object b) {
        if (a instanceof String && b instanceof String) {
            return compareCodePoints((String) a, (String) b);
        }
        if (a instanceof Double && b instanceof Double) {
            double x = (Double) a;
            double y = (Double) b;
            return x < y ? -1 : (x > y ? 1 : 0);  // -0.0 == 0.0, as in Python
        }
        return ((Comparable) a).compareTo(b);
    }

    private static int compareCodePoints(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i);
            int cb = b.codePointAt(j);
            if (ca != cb) {
                return Integer.compare(ca, cb);
            }
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    /** Keep (ts, ct, v) if it is greater than the accumulator's triple. */
    private static void offer(Row acc, Long ts, Long ct, Object v) {
        if (ts == null || ct == null || v == null) {
            return;
        }
        Object cur = acc.getField(2);
        if (cur != null) {
            int c = Long.compare(ts, (Long) acc.getField(0));
            if (c == 0) {
                c = Long.compare(ct, (Long) acc.getField(1));
            }
            if (c == 0) {
                c = compareValues(v, cur);
            }
            if (c <= 0) {
                return;
            }
        }
        acc.setField(0, ts);
        acc.setField(1, ct);
        acc.setField(2, v);
    }

    public void accumulate(Row acc, Long ts, Long ct, Object v) {
        offer(acc, ts, ct, v);
    }

    public void merge(Row acc, Iterable<Row> others) {
        for (Row o : others) {
            offer(acc, (Long) o.getField(0), (Long) o.getField(1), o.getField(2));
        }
    }

    public void resetAccumulator(Row acc) {
        acc.setField(0, null);
        acc.setField(1, null);
        acc.setField(2, null);
    }

    @Override
    public Row getValue(Row acc) {
        if (acc.getField(2) == null) {
            return null;
        }
        return Row.of(acc.getField(0), acc.getField(1), acc.getField(2));
    }
}
