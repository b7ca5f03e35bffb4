package dev.braid.flink;

import java.math.BigInteger;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * braid's integer sum partial: an exact int64, overflow is an error (DESIGN 4.3).
 *
 * <p>Flink's SUM(BIGINT) wraps around silently on overflow (two's complement, like Java's
 * {@code +}), so 2^62 + 2^62 would be written as -2^63. DuckDB (a HUGEINT sum cast back to
 * BIGINT), the embedded runner and the online stores refuse it; braid aggregates integer
 * sums in Flink with this UDAF so that every engine agrees.
 *
 * <p>The accumulator is a 128-bit integer, {@code carry * 2^64 + s}: an addition that leaves
 * the int64 range (the test of {@link Math#addExact}) moves one unit into {@code carry}. Only
 * the value Flink emits is checked, not each addition, so it depends on the set of events it
 * covers, not on their arrival order or on how the local/global (mini-batch) aggregation
 * splits them, and agrees with DuckDB's HUGEINT sum over the same events. A value outside
 * int64 throws an ArithmeticException whose message starts with "braid overflow:" (the
 * Flink runner raises it as OverflowError64), inside a SuppressRestartsException: the job
 * fails without restarting (a restart would meet the same events), and a wrapped value is
 * never written.
 *
 * <p>NULL inputs are ignored; with no non-null input the result is NULL (braid's canonical
 * empty partial, what the built-in SUM gives). No retract: the tiles' GROUP BY reads
 * insert-only events (Flink refuses at plan time a UDAF without retract on updating input).
 */
@FunctionHint(
        input = @DataTypeHint("BIGINT"),
        accumulator = @DataTypeHint(
                "ROW<s BIGINT NOT NULL, carry BIGINT NOT NULL, n BIGINT NOT NULL>"),
        output = @DataTypeHint("BIGINT"))
public class ExactSum extends AggregateFunction<Long, Row> {

    @Override
    public Row createAccumulator() {
        return Row.of(0L, 0L, 0L);
    }

    /** acc += (carry * 2^64 + x), counting n non-null inputs. */
    private static void add(Row acc, long x, long carry, long n) {
        long s = (Long) acc.getField(0);
        long r = s + x;
        long c = (Long) acc.getField(1) + carry;
        // Hacker's Delight 2-12, as in Math.addExact: the sum wrapped iff both operands have
        // the sign opposite to the result's; then the true sum is r + 2^64 or r - 2^64.
        if (((s ^ r) & (x ^ r)) < 0) {
            c += x > 0 ? 1 : -1;
        }
        acc.setField(0, r);
        acc.setField(1, c);
        acc.setField(2, (Long) acc.getField(2) + n);
    }

    public void accumulate(Row acc, Long x) {
        if (x != null) {
            add(acc, x, 0L, 1L);
        }
    }

    public void merge(Row acc, Iterable<Row> others) {
        for (Row o : others) {
            add(acc, (Long) o.getField(0), (Long) o.getField(1), (Long) o.getField(2));
        }
    }

    public void resetAccumulator(Row acc) {
        acc.setField(0, 0L);
        acc.setField(1, 0L);
        acc.setField(2, 0L);
    }

    @Override
    public Long getValue(Row acc) {
        if ((Long) acc.getField(2) == 0L) {
            return null;
        }
        long s = (Long) acc.getField(0);
        long carry = (Long) acc.getField(1);
        if (carry != 0L) {
            BigInteger exact = BigInteger.valueOf(carry).shiftLeft(64).add(BigInteger.valueOf(s));
            throw noRestart(new ArithmeticException(
                    "braid overflow: an int64 sum left the int64 range (exact sum " + exact
                    + "); DESIGN 4.3: integer sums are exact and overflow is an error"));
        }
        return s;
    }

    /**
     * The overflow wrapped in Flink's SuppressRestartsException: the same events overflow
     * again after every restart from a checkpoint, so the job fails at once instead of
     * restarting until the restart strategy gives up. Looked up by name, as it lives in
     * Flink's runtime (not on the UDAF's compile classpath); without it, the overflow itself.
     */
    private static RuntimeException noRestart(ArithmeticException overflow) {
        try {
            return (RuntimeException) Class
                    .forName("org.apache.flink.runtime.execution.SuppressRestartsException")
                    .getConstructor(Throwable.class)
                    .newInstance(overflow);
        } catch (ReflectiveOperationException | ClassCastException e) {
            return overflow;
        }
    }
}
