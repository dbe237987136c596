package io.moecluster.deploy.commands;

import org.HdrHistogram.Histogram;

/**
 * Latency percentiles for {@code moe bench}: an HdrHistogram in microseconds (3 significant
 * digits, up to an hour), safe to record into from gRPC callback threads.
 */
final class BenchStats {
  private static final long MAX_MICROS = 3_600_000_000L;

  private final Histogram histogram = new Histogram(MAX_MICROS, 3);

  synchronized void recordNanos(long nanos) {
    histogram.recordValue(Math.min(MAX_MICROS, Math.max(0, nanos / 1000)));
  }

  synchronized long count() {
    return histogram.getTotalCount();
  }

  /** The {@code percentile} (0-100) in milliseconds; 0 when nothing was recorded. */
  synchronized double percentileMillis(double percentile) {
    return histogram.getTotalCount() == 0 ? 0 : histogram.getValueAtPercentile(percentile) / 1000.0;
  }
}
