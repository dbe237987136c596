package io.moecluster.router;

import java.time.Duration;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Timeouts that cost no thread wake-up to set or cancel: each is an entry in a set that a
 * periodic {@link #sweep} looks over, so setting one is a set insert and cancelling it a remove.
 * They are for the expert data channel's calls: two set and two cancelled a layer at concurrency 1,
 * on the path of every decode step, with timeouts of seconds, so a sweep every tenth of a second or
 * so is precise enough.
 *
 * <p>{@code CompletableFuture.orTimeout} woke the common pool's delay scheduler thread for every
 * timeout set and every one cancelled (1,500 wake-ups a second at concurrency 1, by {@code perf
 * sched}); one timer per call on Pekko's timer wheel kept its thread busy filing them instead (two
 * to three times its CPU time). A sweep costs neither.
 */
final class SweptTimeouts implements ExpertDataChannels.Timers {
  /** One timeout; identity is what cancels it. */
  private static final class Entry {
    final long dueAt; // System.nanoTime
    final Runnable task;

    Entry(long dueAt, Runnable task) {
      this.dueAt = dueAt;
      this.task = task;
    }
  }

  private final Set<Entry> entries = ConcurrentHashMap.newKeySet();

  /** How often to sweep for timeouts of at least {@code shortest}: a twentieth of it, 10-100 ms. */
  static Duration sweepPeriod(Duration shortest) {
    long millis = Math.max(10, Math.min(100, shortest.toMillis() / 20));
    return Duration.ofMillis(millis);
  }

  @Override
  public Runnable after(Duration delay, Runnable task) {
    Entry e = new Entry(System.nanoTime() + delay.toNanos(), task);
    entries.add(e);
    return () -> entries.remove(e);
  }

  /** Runs, once each, the tasks due at {@code now} ({@link System#nanoTime}) and not cancelled. */
  void sweep(long now) {
    for (Entry e : entries) {
      if (now - e.dueAt >= 0 && entries.remove(e)) {
        e.task.run();
      }
    }
  }

  /** Timeouts set and neither run nor cancelled. */
  int pending() {
    return entries.size();
  }
}
