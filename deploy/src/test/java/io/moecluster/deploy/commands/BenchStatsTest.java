package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class BenchStatsTest {

  @Test
  void percentilesOfAKnownDistribution() {
    BenchStats stats = new BenchStats();
    List<Long> millis = new ArrayList<>();
    for (long ms = 1; ms <= 1000; ms++) {
      millis.add(ms);
    }
    Collections.shuffle(millis, new Random(1));
    for (long ms : millis) {
      stats.recordNanos(ms * 1_000_000);
    }
    assertEquals(1000, stats.count());
    // 3 significant digits: within 0.1 %.
    assertEquals(500, stats.percentileMillis(50), 0.5);
    assertEquals(990, stats.percentileMillis(99), 1.0);
    assertEquals(1000, stats.percentileMillis(100), 1.0);
  }

  @Test
  void aTailShowsInP99NotInP50() {
    BenchStats stats = new BenchStats();
    for (int i = 0; i < 980; i++) {
      stats.recordNanos(20_000_000); // 20 ms
    }
    for (int i = 0; i < 20; i++) {
      stats.recordNanos(2_000_000_000L); // 2 s
    }
    assertEquals(20, stats.percentileMillis(50), 0.05);
    assertEquals(2000, stats.percentileMillis(99), 2.0);
  }

  @Test
  void emptyAndOutOfRangeValues() {
    BenchStats stats = new BenchStats();
    assertEquals(0, stats.percentileMillis(99));
    stats.recordNanos(-5);
    stats.recordNanos(Long.MAX_VALUE);
    assertEquals(2, stats.count());
    assertEquals(0, stats.percentileMillis(1), 0.001);
  }
}
