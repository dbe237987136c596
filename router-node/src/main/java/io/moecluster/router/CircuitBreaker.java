package io.moecluster.router;

import java.util.function.LongSupplier;

/**
 * The router's health view of one expert entity: closed (requests flow), open (the entity is
 * skipped: after {@code failures} consecutive failed attempts, or at once when its node becomes
 * unreachable) and half-open (after {@code coolDownNanos} one probe request may go; its success
 * closes the breaker, its failure opens it again). Thread-safe: attempts complete on Pekko's
 * threads, the engine asks on its own. Time comes from the given clock, so tests can drive it.
 */
public final class CircuitBreaker {

  /** Breaker states; {@link #gaugeValue} is what {@code moe_expert_breaker_state} shows. */
  public enum State {
    CLOSED(0), HALF_OPEN(1), OPEN(2);

    public final int gaugeValue;

    State(int gaugeValue) {
      this.gaugeValue = gaugeValue;
    }
  }

  /** Told about every state change (on the thread that caused it). */
  public interface Listener {
    void onStateChange(State from, State to);
  }

  private final int failures;
  private final long coolDownNanos;
  private final LongSupplier clock;
  private final Listener listener;

  private State state = State.CLOSED;
  private int consecutiveFailures;
  private long openedAt;
  private boolean probeInFlight;

  public CircuitBreaker(int failures, long coolDownNanos, LongSupplier clock, Listener listener) {
    if (failures < 1 || coolDownNanos <= 0) {
      throw new IllegalArgumentException("failures must be >= 1 and the cool-down > 0");
    }
    this.failures = failures;
    this.coolDownNanos = coolDownNanos;
    this.clock = clock;
    this.listener = listener;
  }

  /**
   * Whether a request may go to the entity now. In an open breaker past its cool-down this moves
   * to half-open and admits exactly one probe; later callers are refused until it resolves.
   */
  public synchronized boolean tryAcquire() {
    switch (state) {
      case CLOSED -> {
        return true;
      }
      case OPEN -> {
        if (clock.getAsLong() - openedAt < coolDownNanos) {
          return false;
        }
        move(State.HALF_OPEN);
        probeInFlight = true;
        return true;
      }
      default -> {
        if (probeInFlight) {
          return false;
        }
        probeInFlight = true;
        return true;
      }
    }
  }

  /** When a request would be admitted again ({@link System#nanoTime} scale); now if it would be. */
  public synchronized long availableAt() {
    return switch (state) {
      case CLOSED -> clock.getAsLong();
      case OPEN -> openedAt + coolDownNanos;
      case HALF_OPEN -> probeInFlight ? clock.getAsLong() + coolDownNanos : clock.getAsLong();
    };
  }

  /** An attempt answered in time. */
  public synchronized void onSuccess() {
    consecutiveFailures = 0;
    probeInFlight = false;
    if (state != State.CLOSED) {
      move(State.CLOSED);
    }
  }

  /** An attempt timed out or failed. */
  public synchronized void onFailure() {
    consecutiveFailures++;
    if (state == State.HALF_OPEN) {
      open();
    } else if (state == State.CLOSED && consecutiveFailures >= failures) {
      open();
    }
  }

  /** Opens now, whatever the count (the entity's node became unreachable). */
  public synchronized void forceOpen() {
    if (state != State.OPEN) {
      open();
    } else {
      openedAt = clock.getAsLong(); // restart the cool-down
    }
  }

  /** Closed with a clean count (the entity is being started afresh elsewhere). */
  public synchronized void reset() {
    consecutiveFailures = 0;
    probeInFlight = false;
    if (state != State.CLOSED) {
      move(State.CLOSED);
    }
  }

  public synchronized State state() {
    return state;
  }

  private void open() {
    openedAt = clock.getAsLong();
    probeInFlight = false;
    move(State.OPEN);
  }

  private void move(State to) {
    State from = state;
    state = to;
    if (listener != null) {
      listener.onStateChange(from, to);
    }
  }
}
