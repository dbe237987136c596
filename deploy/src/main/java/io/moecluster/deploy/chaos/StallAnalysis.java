package io.moecluster.deploy.chaos;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * What a fault did to the streams running across it. Definitions (also in docs/RELIABILITY.md):
 *
 * <ul>
 *   <li><b>affected</b> request: sent before the fault and not ended (completed or failed) when it
 *       was injected;
 *   <li><b>normal ITL</b> of an affected request: the median gap between consecutive tokens that
 *       both arrived before the fault; with fewer than 3 such gaps, the median of every gap before
 *       any fault across the whole load;
 *   <li><b>stall</b> of an affected request: its largest token gap that ends after the fault (the
 *       gap that spans the fault, or a later one, e.g. while the lost experts reload), minus its
 *       normal ITL, at least 0. A request with no token before the fault counts the time from the
 *       fault to its first token as that gap;
 *   <li><b>recovery</b> of an affected request: the time from the fault to its first token after
 *       the fault. The fault's recovery time is the largest over its affected requests: by then
 *       every running stream moves again. A failed affected request never recovers.
 * </ul>
 *
 * @param affected requests running across the fault
 * @param failed of those, the ones that ended in an error
 * @param stallNanos the completed affected requests' stalls, sorted
 * @param recoveryNanos the fault's recovery time; -1 when some affected request did not recover
 *     (failed, or no token after the fault)
 * @param normalItlNanos the median normal ITL of the affected requests
 */
public record StallAnalysis(int affected, int failed, long[] stallNanos, long recoveryNanos, long normalItlNanos) {

  public StallAnalysis {
    stallNanos = stallNanos.clone();
  }

  /** The stall at percentile {@code p} (nearest rank), or -1 with none. */
  public long stallPercentileNanos(double p) {
    return percentile(stallNanos, p);
  }

  public long maxStallNanos() {
    return stallNanos.length == 0 ? -1 : stallNanos[stallNanos.length - 1];
  }

  /** Analyses the fault injected at {@code faultNanos}; {@code firstFaultNanos} bounds "before any fault". */
  public static StallAnalysis of(List<StreamRecord> records, long faultNanos, long firstFaultNanos) {
    long globalItl = median(gapsBefore(records, firstFaultNanos));
    int affected = 0;
    int failed = 0;
    boolean allRecovered = true;
    long recovery = 0;
    List<Long> stalls = new ArrayList<>();
    List<Long> normals = new ArrayList<>();
    for (StreamRecord r : records) {
      if (!r.runningAt(faultNanos)) {
        continue;
      }
      affected++;
      long[] at = r.arrivalNanos();
      int firstAfter = 0;
      while (firstAfter < at.length && at[firstAfter] <= faultNanos) {
        firstAfter++;
      }
      if (firstAfter == at.length) {
        // Nothing arrived after the fault: it failed, or ended with no more token to send.
        if (r.failed()) {
          failed++;
          allRecovered = false;
        }
        continue;
      }
      recovery = Math.max(recovery, at[firstAfter] - faultNanos);
      List<Long> before = new ArrayList<>();
      for (int i = 1; i < firstAfter; i++) {
        before.add(at[i] - at[i - 1]);
      }
      long normal = before.size() >= 3 ? median(before) : globalItl;
      long worst = firstAfter == 0 ? at[0] - faultNanos : at[firstAfter] - at[firstAfter - 1];
      for (int i = Math.max(1, firstAfter + 1); i < at.length; i++) {
        worst = Math.max(worst, at[i] - at[i - 1]);
      }
      if (r.failed()) {
        failed++;
        allRecovered = false;
        continue;
      }
      normals.add(normal);
      stalls.add(Math.max(0, worst - normal));
    }
    long[] sorted = stalls.stream().mapToLong(Long::longValue).sorted().toArray();
    return new StallAnalysis(affected, failed, sorted, allRecovered ? recovery : -1,
        normals.isEmpty() ? globalItl : median(normals));
  }

  private static List<Long> gapsBefore(List<StreamRecord> records, long limitNanos) {
    List<Long> gaps = new ArrayList<>();
    for (StreamRecord r : records) {
      long[] at = r.arrivalNanos();
      for (int i = 1; i < at.length && at[i] <= limitNanos; i++) {
        gaps.add(at[i] - at[i - 1]);
      }
    }
    return gaps;
  }

  static long median(List<Long> values) {
    if (values.isEmpty()) {
      return 0;
    }
    long[] v = values.stream().mapToLong(Long::longValue).sorted().toArray();
    return percentile(v, 50);
  }

  /** Nearest-rank percentile of sorted values; -1 when empty. */
  static long percentile(long[] sorted, double p) {
    if (sorted.length == 0) {
      return -1;
    }
    int rank = (int) Math.ceil(p / 100.0 * sorted.length);
    return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof StallAnalysis s && affected == s.affected && failed == s.failed
        && recoveryNanos == s.recoveryNanos && normalItlNanos == s.normalItlNanos
        && Arrays.equals(stallNanos, s.stallNanos);
  }

  @Override
  public int hashCode() {
    return Arrays.hashCode(stallNanos) * 31 + affected;
  }

  @Override
  public String toString() {
    return "StallAnalysis[affected=" + affected + ", failed=" + failed + ", stalls=" + Arrays.toString(stallNanos)
        + ", recovery=" + recoveryNanos + ", normalItl=" + normalItlNanos + "]";
  }
}
