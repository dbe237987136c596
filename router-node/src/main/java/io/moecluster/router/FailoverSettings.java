package io.moecluster.router;

import com.typesafe.config.Config;
import java.time.Duration;

/**
 * How the router rides over lost or slow expert entities, read once from
 * {@code moe.router.failover} (every key is described in the module's {@code reference.conf}).
 * The overall budget of one layer's expert requests is {@code moe.router.expert-timeout}.
 *
 * @param attemptTimeout how long one request to one entity may take before it counts as lost
 * @param maxRetries most times one chunk is sent again after a failed attempt (per step)
 * @param backoffMin first pause before re-sending to the same entity (doubles each retry)
 * @param backoffMax longest pause between retries
 * @param jitter share of each pause drawn at random (0..1), so routers do not retry in lockstep
 * @param breakerFailures consecutive failed attempts that open an entity's circuit breaker
 * @param breakerCoolDown how long an open breaker waits before it lets one probe through
 * @param hedgeEnabled with replicas, send a request to the other replica as well when it is slow
 * @param hedgePercentile the latency percentile of recent calls after which a request is hedged
 * @param hedgeMinDelay the hedge delay never goes below this (short calls jitter a lot)
 * @param hedgeMaxDelay the hedge delay never goes above this (bounds the stall a dead node causes)
 * @param suspectAfter an attempt unanswered this long makes the router check its node for a
 *     crashed process ({@code moe.cluster.down-crashed-nodes}); the attempt itself goes on
 */
public record FailoverSettings(
    Duration attemptTimeout,
    int maxRetries,
    Duration backoffMin,
    Duration backoffMax,
    double jitter,
    int breakerFailures,
    Duration breakerCoolDown,
    boolean hedgeEnabled,
    double hedgePercentile,
    Duration hedgeMinDelay,
    Duration hedgeMaxDelay,
    Duration suspectAfter) {

  public FailoverSettings {
    require(positive(attemptTimeout), "attempt-timeout must be > 0", attemptTimeout);
    require(maxRetries >= 0, "max-retries must be >= 0", maxRetries);
    require(positive(backoffMin), "backoff-min must be > 0", backoffMin);
    require(backoffMax.compareTo(backoffMin) >= 0, "backoff-max must be >= backoff-min", backoffMax);
    require(jitter >= 0 && jitter <= 1, "jitter must be in [0, 1]", jitter);
    require(breakerFailures >= 1, "breaker.failures must be >= 1", breakerFailures);
    require(positive(breakerCoolDown), "breaker.cool-down must be > 0", breakerCoolDown);
    require(hedgePercentile > 0 && hedgePercentile <= 1, "hedge.percentile must be in (0, 1]", hedgePercentile);
    require(positive(hedgeMinDelay), "hedge.min-delay must be > 0", hedgeMinDelay);
    require(hedgeMaxDelay.compareTo(hedgeMinDelay) >= 0, "hedge.max-delay must be >= hedge.min-delay",
        hedgeMaxDelay);
    require(positive(suspectAfter), "suspect-after must be > 0", suspectAfter);
  }

  /** The defaults of {@code reference.conf}. */
  public static FailoverSettings defaults() {
    return new FailoverSettings(Duration.ofSeconds(4), 10, Duration.ofMillis(50), Duration.ofSeconds(1), 0.2,
        3, Duration.ofSeconds(1), true, 0.99, Duration.ofMillis(5), Duration.ofMillis(100),
        Duration.ofMillis(500));
  }

  /** Reads {@code moe.router.failover}. */
  public static FailoverSettings fromConfig(Config router) {
    Config c = router.getConfig("failover");
    return new FailoverSettings(
        c.getDuration("attempt-timeout"),
        c.getInt("max-retries"),
        c.getDuration("backoff-min"),
        c.getDuration("backoff-max"),
        c.getDouble("jitter"),
        c.getInt("breaker.failures"),
        c.getDuration("breaker.cool-down"),
        c.getBoolean("hedge.enabled"),
        c.getDouble("hedge.percentile"),
        c.getDuration("hedge.min-delay"),
        c.getDuration("hedge.max-delay"),
        c.getDuration("suspect-after"));
  }

  /** The pause before retry number {@code retry} (1, 2, ...): exponential, capped, with jitter. */
  public long backoffNanos(int retry, double random) {
    long base = backoffMin.toNanos() << Math.min(20, Math.max(0, retry - 1));
    long capped = Math.min(backoffMax.toNanos(), base);
    return Math.round(capped * (1 - jitter + jitter * random));
  }

  private static boolean positive(Duration d) {
    return !d.isNegative() && !d.isZero();
  }

  private static void require(boolean ok, String rule, Object value) {
    if (!ok) {
      throw new IllegalArgumentException("moe.router.failover." + rule + ", got " + value);
    }
  }
}
