package io.moecluster.router;

import com.typesafe.config.Config;
import io.moecluster.core.model.WeightPlacement;
import java.nio.file.Path;
import java.time.Duration;

/**
 * The settings of a router node, read once from {@code moe.router} (see the module's
 * {@code reference.conf}, where every key is described).
 */
public record RouterSettings(
    Path modelDir,
    int computeThreads,
    int maxRunningSequences,
    int maxWaiting,
    Duration expertTimeout,
    int minExpertNodes,
    int maxExpertMessageBytes,
    Duration placementRetryInterval,
    boolean prefetchEnabled,
    int prefetchDepth,
    int prefetchExtraExperts,
    FailoverSettings failover,
    boolean dataChannel,
    boolean kernelWarmUp,
    WeightPlacement weights) {

  public RouterSettings {
    if (modelDir == null || modelDir.toString().isEmpty()) {
      throw new IllegalArgumentException("moe.router.model-dir must name the checkpoint directory");
    }
    require(computeThreads >= 0, "compute-threads must be >= 0 (0 = all cores)", computeThreads);
    require(maxRunningSequences >= 1, "max-running-sequences must be >= 1", maxRunningSequences);
    require(maxWaiting >= 0, "max-waiting must be >= 0", maxWaiting);
    require(!expertTimeout.isNegative() && !expertTimeout.isZero(), "expert-timeout must be > 0", expertTimeout);
    require(minExpertNodes >= 1, "min-expert-nodes must be >= 1", minExpertNodes);
    require(maxExpertMessageBytes >= 1024, "max-expert-message-bytes must be >= 1 KiB", maxExpertMessageBytes);
    require(!placementRetryInterval.isNegative() && !placementRetryInterval.isZero(),
        "placement-retry-interval must be > 0", placementRetryInterval);
    require(prefetchDepth >= 1, "prefetch.depth must be >= 1", prefetchDepth);
    require(prefetchExtraExperts >= 0, "prefetch.extra-experts must be >= 0", prefetchExtraExperts);
    if (failover == null) {
      throw new IllegalArgumentException("moe.router.failover is missing");
    }
    if (weights == null) {
      throw new IllegalArgumentException("moe.router.weights is missing");
    }
  }

  /**
   * Settings with prefetching on at depth 1, the default failover settings, the data channel, the
   * kernel warm-up and {@code weights = auto}.
   */
  public RouterSettings(Path modelDir, int computeThreads, int maxRunningSequences, int maxWaiting,
      Duration expertTimeout, int minExpertNodes, int maxExpertMessageBytes, Duration placementRetryInterval) {
    this(modelDir, computeThreads, maxRunningSequences, maxWaiting, expertTimeout, minExpertNodes,
        maxExpertMessageBytes, placementRetryInterval, true, 1, 0, FailoverSettings.defaults(), true, true,
        WeightPlacement.AUTO);
  }

  private static void require(boolean ok, String rule, Object value) {
    if (!ok) {
      throw new IllegalArgumentException("moe.router." + rule + ", got " + value);
    }
  }

  private static WeightPlacement weights(String text) {
    try {
      return WeightPlacement.parse(text);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("moe.router." + e.getMessage(), e);
    }
  }

  /** Reads {@code moe.router.*} from a full configuration (e.g. {@code system.settings().config()}). */
  public static RouterSettings fromConfig(Config config) {
    Config c = config.getConfig("moe.router");
    String dir = c.getString("model-dir");
    if (dir.isBlank()) {
      throw new IllegalArgumentException("moe.router.model-dir must name the checkpoint directory");
    }
    long bytes = c.getBytes("max-expert-message-bytes");
    return new RouterSettings(
        Path.of(dir),
        c.getInt("compute-threads"),
        c.getInt("max-running-sequences"),
        c.getInt("max-waiting"),
        c.getDuration("expert-timeout"),
        c.getInt("min-expert-nodes"),
        (int) Math.min(Integer.MAX_VALUE, bytes),
        c.getDuration("placement-retry-interval"),
        c.getBoolean("prefetch.enabled"),
        c.getInt("prefetch.depth"),
        c.getInt("prefetch.extra-experts"),
        FailoverSettings.fromConfig(c),
        c.getBoolean("data-channel"),
        c.getBoolean("kernel-warm-up"),
        weights(c.getString("weights")));
  }
}
