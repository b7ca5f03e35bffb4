package dev.braid.flink;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * braid's variance partial (n, mean, m2): Welford build, Chan merge (DESIGN 4.3).
 *
 * <p>Flink's VAR_POP/STDDEV are a sum of squares (STACK.md: 4587.5 instead of 1.007 on
 * 1e9+N(0,1)), so braid aggregates with this UDAF. The update is the Chan merge of the state
 * with (1, x, 0), written in the same operation order as braid.algebra.chan, so one partition
 * read in order gives the Python reference's floats bit for bit. NULL inputs are ignored; with
 * no input the result is NULL (braid's canonical empty partial).
 */
@FunctionHint(
        input = @DataTypeHint("DOUBLE"),
        accumulator = @DataTypeHint("ROW<n BIGINT NOT NULL, mean DOUBLE NOT NULL, m2 DOUBLE NOT NULL>"),
        output = @DataTypeHint("ROW<n BIGINT, mean DOUBLE, m2 DOUBLE>"))
public class Welford extends AggregateFunction<Row, Row> {

    @Override
    public Row createAccumulator() {
        return Row.of(0L, 0.0, 0.0);
    }

    /** Chan et al.: (na, ma, m2a) + (nb, mb, m2b), in braid.algebra.chan's operation order. */
    private static void chan(Row acc, long nb, double mb, double m2b) {
        long na = (Long) acc.getField(0);
        double ma = (Double) acc.getField(1);
        double m2a = (Double) acc.getField(2);
        long n = na + nb;
        if (n == 0) {
            return;
        }
        double delta = mb - ma;
        double mean = ma + delta * nb / n;
        double m2 = m2a + m2b + delta * delta * na * nb / n;
        acc.setField(0, n);
        acc.setField(1, mean);
        acc.setField(2, m2);
    }

    public void accumulate(Row acc, Double x) {
        if (x != null) {
            chan(acc, 1L, x, 0.0);
        }
    }

    public void merge(Row acc, Iterable<Row> others) {
        for (Row o : others) {
            chan(acc, (Long) o.getField(0), (Double) o.getField(1), (Double) o.getField(2));
        }
    }

    public void resetAccumulator(Row acc) {
        acc.setField(0, 0L);
        acc.setField(1, 0.0);
        acc.setField(2, 0.0);
    }

    @Override
    public Row getValue(Row acc) {
        if ((Long) acc.getField(0) == 0L) {
            return null;
        }
        return Row.of(acc.getField(0), acc.getField(1), acc.getField(2));
    }
}
