package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The hedge delay: a percentile of recent latencies, within its floor and ceiling. */
class HedgePolicyTest {
  private static final long MS = 1_000_000;

  @Test
  void waitsTheCeilingUntilEnoughLatenciesAreKnown() {
    HedgePolicy p = new HedgePolicy(0.99, 5 * MS, 100 * MS, 100);
    assertEquals(100 * MS, p.delayNanos());
    for (int i = 0; i < 24; i++) {
      p.record(MS);
    }
    assertEquals(100 * MS, p.delayNanos(), "24 of a window of 100");
    p.record(MS);
    assertEquals(5 * MS, p.delayNanos(), "25: the p99 (1 ms) floored at 5 ms");
  }

  @Test
  void followsThePercentileOfTheWindow() {
    HedgePolicy p = new HedgePolicy(0.9, MS, 1_000 * MS, 100);
    for (int i = 1; i <= 100; i++) {
      p.record(i * MS); // 1..100 ms
    }
    assertEquals(90 * MS, p.delayNanos());
    for (int i = 0; i < 100; i++) {
      p.record(2 * MS); // the window forgets the old ones
    }
    assertEquals(2 * MS, p.delayNanos());
    p.record(5_000 * MS);
    assertEquals(2 * MS, p.delayNanos(), "one outlier of 100 is above the p90");
  }

  @Test
  void staysUnderTheCeiling() {
    HedgePolicy p = new HedgePolicy(0.99, MS, 50 * MS, 8);
    for (int i = 0; i < 8; i++) {
      p.record(400 * MS);
    }
    assertEquals(50 * MS, p.delayNanos());
  }

  @Test
  void rejectsNonsense() {
    assertThrows(IllegalArgumentException.class, () -> new HedgePolicy(0, MS, MS, 8));
    assertThrows(IllegalArgumentException.class, () -> new HedgePolicy(0.5, 2 * MS, MS, 8));
  }
}
