package dev.braid.flink;

import java.time.DayOfWeek;
import java.time.DateTimeException;
import java.time.LocalDate;

/**
 * Reads an event time the way braid's embedded runner does ({@code parse_time} in
 * {@code braid_streaming/ingest.py}), so the Flink job and the runner accept, refuse and name
 * the same values (DESIGN 4.8).
 *
 * <p>A JSON integer within int64 is epoch milliseconds. A string is read as CPython 3.11's
 * {@code datetime.fromisoformat} reads it, quirks included: the date as {@code YYYY-MM-DD},
 * {@code YYYYMMDD} or an ISO week date ({@code YYYY-Www[-D]}, {@code YYYYWww[D]}); any one
 * character as the separator; the time as {@code HH[:MM[:SS]]} or {@code HH[MM[SS]]} with a
 * fraction after {@code .} or {@code ,} of any length (only microseconds are kept); the zone
 * {@code Z} or {@code +-HH[:MM[:SS[.f]]]} (also without colons), strictly inside +-24 h. The
 * result is epoch ms floored, like Python's {@code (d - epoch) // timedelta(milliseconds=1)}.
 * A string that reads as a time without a zone is {@link #NAIVE}; everything else that cannot
 * be read (another JSON type, an integer outside int64, an invalid string) is
 * {@link #WRONG_TYPE}.
 */
final class IsoTime {

    static final String WRONG_TYPE = "wrong_type";
    static final String NAIVE = "naive_timestamp";

    private static final long MICROS_PER_DAY = 86_400_000_000L;
    private static final int[] FRACTION_SCALE = {1, 100_000, 10_000, 1_000, 100, 10, 1};

    /** Epoch ms of a valid time; meaningful only when {@link #error} is null. */
    final long millis;
    /** Why the value is refused, or null when it is a valid time. */
    final String error;

    private IsoTime(long millis, String error) {
        this.millis = millis;
        this.error = error;
    }

    /**
     * Reads one JSON value.
     *
     * @param json the value's JSON text in an array wrapper ({@code [1]}, {@code ["x"]}), as
     *     Flink's {@code JSON_QUERY ... WITH ARRAY WRAPPER} returns it; null when absent or null
     * @param text the value as a string ({@code JSON_VALUE}: a JSON string unescaped)
     * @return null for an absent value, else the time or the reason it is refused
     */
    static IsoTime read(String json, String text) {
        if (json == null) {
            return null;
        }
        if (isInteger(json)) {
            try {
                return ok(Long.parseLong(json.substring(1, json.length() - 1)));
            } catch (NumberFormatException outsideInt64) {
                return refused(WRONG_TYPE);
            }
        }
        if (json.startsWith("[\"") && text != null) {
            return new Reader(text.codePoints().toArray()).dateTime();
        }
        return refused(WRONG_TYPE);
    }

    /** {@code json} is {@code [-?[0-9]+]}: a JSON integer in Flink's array wrapper. */
    private static boolean isInteger(String json) {
        int n = json.length();
        if (n < 3 || json.charAt(0) != '[' || json.charAt(n - 1) != ']') {
            return false;
        }
        int i = json.charAt(1) == '-' ? 2 : 1;
        if (i == n - 1) {
            return false;
        }
        for (; i < n - 1; i++) {
            char c = json.charAt(i);
            if (c < '0' || c > '9') {
                return false;
            }
        }
        return true;
    }

    private static IsoTime ok(long millis) {
        return new IsoTime(millis, null);
    }

    private static IsoTime refused(String reason) {
        return new IsoTime(0L, reason);
    }

    /**
     * One string, read position by position like CPython's C parser: reading past the end
     * gives 0, as the C code reads the terminating NUL.
     */
    private static final class Reader {
        private final int[] s;
        private int hour;
        private int minute;
        private int second;
        private int micro;

        Reader(int[] s) {
            this.s = s;
        }

        private int at(int i) {
            return i < s.length ? s[i] : 0;
        }

        private static boolean isDigit(int c) {
            return c >= '0' && c <= '9';
        }

        /** The number in the n digits at p, or -1 if one of them is not an ASCII digit. */
        private int digits(int p, int n) {
            int v = 0;
            for (int i = p; i < p + n; i++) {
                int c = at(i);
                if (!isDigit(c)) {
                    return -1;
                }
                v = v * 10 + (c - '0');
            }
            return v;
        }

        IsoTime dateTime() {
            if (s.length < 7) {
                return refused(WRONG_TYPE);
            }
            int sep = separator();
            if (sep < 0) {
                return refused(WRONG_TYPE);
            }
            Long day = date(sep);
            if (day == null) {
                return refused(WRONG_TYPE);
            }
            long offsetMicros = 0;
            boolean zoned = false;
            if (s.length > sep) {
                long[] zone = time(sep + 1);
                if (zone == null) {
                    return refused(WRONG_TYPE);
                }
                zoned = zone.length > 0;
                offsetMicros = zoned ? zone[0] : 0;
            }
            if (hour > 23 || minute > 59 || second > 59) {
                return refused(WRONG_TYPE);
            }
            if (!zoned) {
                return refused(NAIVE);
            }
            long micros = day * MICROS_PER_DAY
                    + ((hour * 60L + minute) * 60L + second) * 1_000_000L + micro - offsetMicros;
            return ok(Math.floorDiv(micros, 1000L));
        }

        /** Where the date ends (CPython's _find_isoformat_datetime_separator), or -1. */
        private int separator() {
            int len = s.length;
            if (len == 7) {
                return 7;
            }
            if (at(4) == '-') {
                if (at(5) != 'W') {
                    return 10;
                }
                if (len > 8 && at(8) == '-') {
                    if (len == 9) {
                        return -1;
                    }
                    return len > 10 && isDigit(at(10)) ? 8 : 10;
                }
                return 8;
            }
            if (at(4) == 'W') {
                int idx = 7;
                while (idx < len && isDigit(at(idx))) {
                    idx++;
                }
                if (idx < 9) {
                    return idx;
                }
                return idx % 2 == 0 ? 7 : 8;
            }
            return 8;
        }

        /** Epoch day of the date in [0, end), or null when it is not a valid date. */
        private Long date(int end) {
            int year = digits(0, 4);
            if (year < 0) {
                return null;
            }
            boolean dashes = at(4) == '-';
            int p = dashes ? 5 : 4;
            long day;
            if (at(p) == 'W') {
                p++;
                int week = digits(p, 2);
                if (week < 0) {
                    return null;
                }
                p += 2;
                int weekday = 1;
                if (p < end) {
                    if (dashes && at(p++) != '-') {
                        return null;
                    }
                    weekday = digits(p, 1);
                    if (weekday < 0) {
                        return null;
                    }
                }
                Long monday = weekMonday(year, week);
                if (monday == null || weekday < 1 || weekday > 7) {
                    return null;
                }
                day = monday + weekday - 1;
            } else {
                int month = digits(p, 2);
                if (month < 0) {
                    return null;
                }
                p += 2;
                if (dashes && at(p++) != '-') {
                    return null;
                }
                int dom = digits(p, 2);
                if (dom < 0 || year < 1) {
                    return null;
                }
                try {
                    day = LocalDate.of(year, month, dom).toEpochDay();
                } catch (DateTimeException badDate) {
                    return null;
                }
            }
            int y = LocalDate.ofEpochDay(day).getYear();
            return y >= 1 && y <= 9999 ? day : null;
        }

        /** Epoch day of the Monday of ISO week {@code week}, or null if the year has none. */
        private static Long weekMonday(int year, int week) {
            LocalDate jan1 = LocalDate.of(year, 1, 1);
            DayOfWeek first = jan1.getDayOfWeek();
            boolean longYear = first == DayOfWeek.THURSDAY
                    || (first == DayOfWeek.WEDNESDAY && jan1.isLeapYear());
            if (week < 1 || week > 53 || (week == 53 && !longYear)) {
                return null;
            }
            int before = first.getValue() - 1;
            long monday = jan1.toEpochDay() - before + (before > 3 ? 7 : 0);
            return monday + (week - 1) * 7L;
        }

        /**
         * Reads the time from {@code start}: sets the fields and returns {} without a zone,
         * {offset in microseconds} with one, null when the string is invalid.
         */
        private long[] time(int start) {
            int end = s.length;
            int zone = start;
            while (zone < end && at(zone) != 'Z' && at(zone) != '+' && at(zone) != '-') {
                zone++;
            }
            if (start == end) {
                return null;
            }
            int[] t = new int[4];
            int rv = clock(start, zone, t);
            if (rv < 0) {
                return null;
            }
            hour = t[0];
            minute = t[1];
            second = t[2];
            micro = t[3];
            if (zone == end) {
                return rv == 1 ? null : new long[0];
            }
            if (at(zone) == 'Z') {
                return zone + 1 == end ? new long[] {0L} : null;
            }
            int sign = at(zone) == '-' ? -1 : 1;
            int[] z = new int[4];
            if (clock(zone + 1, end, z) != 0) {
                return null;
            }
            long seconds = z[0] * 3600L + z[1] * 60L + z[2];
            if (seconds == 0) {
                return new long[] {0L}; // CPython: a zero offset is UTC, its fraction dropped
            }
            long offset = sign * (seconds * 1_000_000L + z[3]);
            return Math.abs(offset) < MICROS_PER_DAY ? new long[] {offset} : null;
        }

        /**
         * CPython's parse_hh_mm_ss_ff over [p, end): hour, minute, second, microsecond into
         * {@code out}. Returns -1 when invalid, 1 when text is left before {@code end} (an
         * error unless a zone follows), 0 otherwise.
         */
        private int clock(int p, int end, int[] out) {
            boolean colons = true;
            for (int i = 0; i < 3; i++) {
                int v = digits(p, 2);
                if (v < 0) {
                    return -1;
                }
                out[i] = v;
                p += 2;
                int c = at(p++);
                if (i == 0) {
                    colons = c == ':';
                }
                if (p >= end) {
                    if (c > 127 && p == end) {
                        // CPython reads UTF-8 bytes: the character's next byte is before end
                        return -1;
                    }
                    return c != 0 ? 1 : 0;
                } else if (colons && c == ':') {
                    continue;
                } else if (c == '.' || c == ',') {
                    break;
                } else if (!colons) {
                    p--;
                } else {
                    return -1;
                }
            }
            int n = Math.min(end - p, 6); // >= 1: the loop returned when it reached end
            int f = digits(p, n);
            if (f < 0) {
                return -1;
            }
            out[3] = f * FRACTION_SCALE[n];
            p += n;
            while (isDigit(at(p))) {
                p++;
            }
            return at(p) != 0 ? 1 : 0;
        }
    }
}
