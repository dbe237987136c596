package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.router.CircuitBreaker.State;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The breaker's states driven by a fake clock. */
class CircuitBreakerTest {
  private final AtomicLong now = new AtomicLong(1_000);
  private final List<String> changes = new ArrayList<>();
  private final CircuitBreaker breaker =
      new CircuitBreaker(3, 500, now::get, (from, to) -> changes.add(from + ">" + to));

  @Test
  void opensAfterConsecutiveFailuresOnly() {
    breaker.onFailure();
    breaker.onFailure();
    breaker.onSuccess(); // resets the count
    breaker.onFailure();
    breaker.onFailure();
    assertEquals(State.CLOSED, breaker.state());
    assertTrue(breaker.tryAcquire());
    breaker.onFailure();
    assertEquals(State.OPEN, breaker.state());
    assertFalse(breaker.tryAcquire());
    assertEquals(1_500, breaker.availableAt());
    assertEquals(List.of("CLOSED>OPEN"), changes);
  }

  @Test
  void halfOpenLetsOneProbeThroughAndItsSuccessCloses() {
    breaker.forceOpen();
    now.addAndGet(499);
    assertFalse(breaker.tryAcquire(), "still cooling down");
    now.addAndGet(1);
    assertTrue(breaker.tryAcquire(), "the probe");
    assertEquals(State.HALF_OPEN, breaker.state());
    assertFalse(breaker.tryAcquire(), "one probe at a time");
    breaker.onSuccess();
    assertEquals(State.CLOSED, breaker.state());
    assertTrue(breaker.tryAcquire());
    assertEquals(List.of("CLOSED>OPEN", "OPEN>HALF_OPEN", "HALF_OPEN>CLOSED"), changes);
  }

  @Test
  void aFailedProbeOpensAgainForAnotherCoolDown() {
    for (int i = 0; i < 3; i++) {
      breaker.onFailure();
    }
    now.addAndGet(500);
    assertTrue(breaker.tryAcquire());
    breaker.onFailure();
    assertEquals(State.OPEN, breaker.state());
    assertFalse(breaker.tryAcquire());
    assertEquals(now.get() + 500, breaker.availableAt());
    now.addAndGet(500);
    assertTrue(breaker.tryAcquire());
    assertEquals(State.HALF_OPEN, breaker.state());
  }

  @Test
  void forceOpenOnAnOpenBreakerRestartsTheCoolDown() {
    breaker.forceOpen();
    now.addAndGet(400);
    breaker.forceOpen();
    now.addAndGet(400);
    assertFalse(breaker.tryAcquire());
    now.addAndGet(100);
    assertTrue(breaker.tryAcquire());
  }
}
