package io.moecluster.deploy.chaos;

import java.io.IOException;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntSupplier;
import java.util.function.LongSupplier;

/**
 * Applies a fault schedule to a {@link ChaosCluster} while the load runs, on its own thread, and
 * records when each fault really happened. A fault fires at its offset, but never before every
 * stream of the load has streamed {@code minTokens} tokens of its current request, so it lands
 * mid-generation rather than between requests or during prefill.
 */
public final class FaultInjector {
  /**
   * A fault as it happened, in nanoseconds since the load started.
   *
   * @param injectedNanos SIGKILL or SIGSTOP sent
   * @param endedNanos SIGCONT sent (pause), the node an Up member again (restart), or {@code
   *     injectedNanos} (kill); -1 when a restarted node did not rejoin in time
   */
  public record Injected(Fault fault, long injectedNanos, long endedNanos) {}

  private final ChaosCluster cluster;
  private final List<Fault> schedule;
  private final int minTokens;
  private final Duration rejoinTimeout;
  private final PrintWriter err;
  private final List<Injected> injected = new ArrayList<>();
  private volatile Thread thread;
  private volatile Exception failure;

  public FaultInjector(ChaosCluster cluster, List<Fault> schedule, int minTokens, Duration rejoinTimeout,
      PrintWriter err) {
    this.cluster = cluster;
    this.schedule = List.copyOf(schedule);
    this.minTokens = minTokens;
    this.rejoinTimeout = rejoinTimeout;
    this.err = err;
  }

  /**
   * Starts injecting; {@code clock} is the load's (nanos since its start), {@code tokensOf}
   * returns how far stream i's current request is, for the {@code streams} streams.
   */
  public void start(LongSupplier clock, int streams, java.util.function.IntUnaryOperator tokensOf) {
    thread = Thread.ofPlatform().name("chaos-faults").daemon().start(() -> {
      try {
        for (Fault f : schedule) {
          awaitTrigger(f, clock, () -> {
            int least = Integer.MAX_VALUE;
            for (int s = 0; s < streams; s++) {
              least = Math.min(least, tokensOf.applyAsInt(s));
            }
            return least;
          });
          inject(f, clock);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } catch (Exception e) {
        failure = e;
      }
    });
  }

  private void awaitTrigger(Fault f, LongSupplier clock, IntSupplier leastTokens) throws InterruptedException {
    while (clock.getAsLong() < f.at().toNanos() || leastTokens.getAsInt() < minTokens) {
      Thread.sleep(5);
    }
  }

  private void inject(Fault f, LongSupplier clock) throws IOException, InterruptedException {
    long at;
    long ended;
    switch (f.kind()) {
      case KILL -> {
        at = clock.getAsLong();
        cluster.kill(f.node());
        ended = at;
      }
      case PAUSE -> {
        cluster.pause(f.node());
        at = clock.getAsLong();
        Thread.sleep(f.pause().toMillis());
        cluster.resume(f.node());
        ended = clock.getAsLong();
      }
      case RESTART -> {
        at = clock.getAsLong();
        cluster.kill(f.node());
        cluster.restart(f.node());
        ended = cluster.awaitJoined(f.node(), rejoinTimeout) ? clock.getAsLong() : -1;
      }
      default -> throw new IllegalStateException("unknown fault " + f.kind());
    }
    synchronized (injected) {
      injected.add(new Injected(f, at, ended));
    }
    err.printf(java.util.Locale.ROOT, "moe chaos: %.2f s: %s%s%n", at / 1e9, f.describe(),
        f.kind() == Fault.Kind.RESTART ? ended < 0 ? " (did not rejoin in " + rejoinTimeout.toSeconds() + " s)"
            : String.format(java.util.Locale.ROOT, " (rejoined after %.2f s)", (ended - at) / 1e9) : "");
    err.flush();
  }

  /** Waits for the schedule to finish (a no-op once it has); rethrows what made it fail. */
  public List<Injected> finish(Duration timeout) throws Exception {
    Thread t = thread;
    if (t != null) {
      t.join(timeout.toMillis());
      if (t.isAlive()) {
        t.interrupt();
        t.join(5000);
      }
    }
    if (failure != null) {
      throw failure;
    }
    synchronized (injected) {
      return List.copyOf(injected);
    }
  }
}
