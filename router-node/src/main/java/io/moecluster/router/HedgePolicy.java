package io.moecluster.router;

import java.util.Arrays;

/**
 * When to hedge an expert request: after the given percentile of the latencies of the last
 * {@code window} answered attempts, kept within [min, max]. Until {@code window / 4} latencies
 * are known it hedges after {@code max}. The percentile is computed when asked (a sorted copy of
 * at most {@code window} longs), once per layer. Thread-safe.
 */
public final class HedgePolicy {
  private final double percentile;
  private final long minNanos;
  private final long maxNanos;
  private final long[] ring; // latencies, nanoseconds
  private int next;
  private int size;

  public HedgePolicy(double percentile, long minNanos, long maxNanos, int window) {
    if (!(percentile > 0 && percentile <= 1) || minNanos <= 0 || maxNanos < minNanos || window < 4) {
      throw new IllegalArgumentException("bad hedge policy: p" + percentile + " [" + minNanos + ", " + maxNanos
          + "] window " + window);
    }
    this.percentile = percentile;
    this.minNanos = minNanos;
    this.maxNanos = maxNanos;
    this.ring = new long[window];
  }

  /** Records the latency of an attempt that answered. */
  public synchronized void record(long latencyNanos) {
    ring[next] = latencyNanos;
    next = (next + 1) % ring.length;
    size = Math.min(size + 1, ring.length);
  }

  /** How long to wait for an answer before sending the request to the other replica too. */
  public synchronized long delayNanos() {
    if (size < ring.length / 4) {
      return maxNanos;
    }
    long[] sorted = Arrays.copyOf(ring, size);
    Arrays.sort(sorted);
    int index = (int) Math.min(size - 1, Math.ceil(percentile * size) - 1);
    return Math.max(minNanos, Math.min(maxNanos, sorted[Math.max(0, index)]));
  }
}
