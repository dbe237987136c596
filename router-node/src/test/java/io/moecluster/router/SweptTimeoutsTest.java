package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** A timeout runs once, at the first sweep at or after its time, unless it was cancelled. */
class SweptTimeoutsTest {
  private final SweptTimeouts timeouts = new SweptTimeouts();

  @Test
  void aTimeoutRunsOnceAtTheFirstSweepOnOrAfterItsTime() {
    AtomicInteger ran = new AtomicInteger();
    long start = System.nanoTime();
    timeouts.after(Duration.ofSeconds(4), ran::incrementAndGet);
    timeouts.sweep(start + TimeUnit.MILLISECONDS.toNanos(3_900));
    assertEquals(0, ran.get(), "not due yet");
    timeouts.sweep(start + TimeUnit.MILLISECONDS.toNanos(4_100));
    assertEquals(1, ran.get());
    timeouts.sweep(start + TimeUnit.SECONDS.toNanos(10));
    assertEquals(1, ran.get(), "once");
    assertEquals(0, timeouts.pending());
  }

  @Test
  void aCancelledTimeoutNeverRuns() {
    AtomicInteger ran = new AtomicInteger();
    long start = System.nanoTime();
    Runnable cancel = timeouts.after(Duration.ofMillis(100), ran::incrementAndGet);
    timeouts.after(Duration.ofMillis(100), ran::incrementAndGet);
    cancel.run();
    assertEquals(1, timeouts.pending());
    timeouts.sweep(start + TimeUnit.SECONDS.toNanos(1));
    assertEquals(1, ran.get(), "only the one left");
    cancel.run(); // cancelling again, or after the other ran, changes nothing
    assertEquals(0, timeouts.pending());
  }

  @Test
  void theSweepPeriodIsATwentiethOfTheTimeoutWithin10To100Ms() {
    assertEquals(Duration.ofMillis(100), SweptTimeouts.sweepPeriod(Duration.ofSeconds(4)));
    assertEquals(Duration.ofMillis(25), SweptTimeouts.sweepPeriod(Duration.ofMillis(500)));
    assertEquals(Duration.ofMillis(10), SweptTimeouts.sweepPeriod(Duration.ofMillis(50)));
  }
}
