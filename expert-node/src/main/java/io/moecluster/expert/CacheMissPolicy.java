package io.moecluster.expert;

import java.util.Locale;

/**
 * What an expert weight cache miss does ({@code moe.expert.cache.on-miss}).
 *
 * <p>{@link #RUN_COLD}: the computation runs at once from the mapped checkpoint bytes (same dtype,
 * same kernels, so bit-identical to a warm run) and the expert is warmed in the background only
 * into free room of the budget and while the loader has spare capacity
 * ({@code moe.expert.cache.background-loads}). On a CPU a load is a copy that competes with the
 * computations for the same cores and memory bandwidth, and while the checkpoint is in the page
 * cache the mapped bytes compute as fast as a warm copy: waiting for the copy, or copying to
 * replace one warm expert with another, only adds its time to the steps.
 *
 * <p>{@link #WAIT_FOR_LOAD}: the computation waits for the expert's load (shared with other misses
 * of it) and runs on the warm copy; the earlier behaviour, kept to measure the difference.
 */
public enum CacheMissPolicy {
  RUN_COLD,
  WAIT_FOR_LOAD;

  /** Parses {@code run-cold} or {@code wait-for-load} (the config spelling). */
  public static CacheMissPolicy parse(String value) {
    return switch (value.trim().toLowerCase(Locale.ROOT)) {
      case "run-cold" -> RUN_COLD;
      case "wait-for-load" -> WAIT_FOR_LOAD;
      default -> throw new IllegalArgumentException(
          "moe.expert.cache.on-miss must be run-cold or wait-for-load, got \"" + value + "\"");
    };
  }
}
