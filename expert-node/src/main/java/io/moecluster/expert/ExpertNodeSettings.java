package io.moecluster.expert;

import com.typesafe.config.Config;
import java.nio.file.Path;

/**
 * The settings of an expert node, read once from {@code moe.expert} (see the module's
 * {@code reference.conf}).
 *
 * @param modelDir the checkpoint directory every expert entity of this node reads its weights from
 * @param computeThreads threads of the compute executor (and of the kernels); 0 = all cores
 * @param cacheBudget the byte budget of the expert weight cache ({@code moe.expert.cache.budget})
 * @param cacheLoaderThreads threads that copy experts into the cache ({@code moe.expert.cache.loader-threads})
 * @param kernelThreads threads the node's expert FFNs spread over ({@code moe.expert.kernel-threads}): a
 *     layer's calls that reach the data channel together run in one pass over them; 0 = as many as
 *     the compute executor has
 * @param cacheMissPolicy what a cache miss does ({@code moe.expert.cache.on-miss})
 * @param cacheBackgroundLoads loads in flight that misses and prefetch hints may start under
 *     {@link CacheMissPolicy#RUN_COLD} ({@code moe.expert.cache.background-loads})
 * @param dataChannel whether the node serves the expert data channel ({@code moe.expert.data-channel.enabled})
 * @param dataChannelPort its TCP port, 0 for a free one ({@code moe.expert.data-channel.port})
 * @param kernelWarmUp whether the node runs its CPU kernels until compiled before it hosts experts
 *     ({@code moe.expert.kernel-warm-up})
 */
public record ExpertNodeSettings(Path modelDir, int computeThreads, CacheBudget cacheBudget, int cacheLoaderThreads,
    int kernelThreads, CacheMissPolicy cacheMissPolicy, int cacheBackgroundLoads, boolean dataChannel,
    int dataChannelPort, boolean kernelWarmUp) {

  public ExpertNodeSettings {
    if (modelDir == null || modelDir.toString().isEmpty()) {
      throw new IllegalArgumentException("moe.expert.model-dir must name the checkpoint directory");
    }
    if (computeThreads < 0) {
      throw new IllegalArgumentException(
          "moe.expert.compute-threads must be >= 0 (0 = all cores), got " + computeThreads);
    }
    if (cacheBudget == null) {
      throw new IllegalArgumentException("moe.expert.cache.budget must be set (a size like 2GiB or a share like 50%)");
    }
    if (cacheLoaderThreads < 1) {
      throw new IllegalArgumentException("moe.expert.cache.loader-threads must be >= 1, got " + cacheLoaderThreads);
    }
    if (kernelThreads < 0) {
      throw new IllegalArgumentException(
          "moe.expert.kernel-threads must be >= 0 (0 = as many as the compute threads), got " + kernelThreads);
    }
    if (cacheMissPolicy == null) {
      throw new IllegalArgumentException("moe.expert.cache.on-miss must be run-cold or wait-for-load");
    }
    if (cacheBackgroundLoads < 1) {
      throw new IllegalArgumentException(
          "moe.expert.cache.background-loads must be >= 1, got " + cacheBackgroundLoads);
    }
    if (dataChannelPort < 0 || dataChannelPort > 65535) {
      throw new IllegalArgumentException(
          "moe.expert.data-channel.port must be 0 (a free port) to 65535, got " + dataChannelPort);
    }
  }

  /** With the data channel on a free port and the kernel warm-up. */
  public ExpertNodeSettings(Path modelDir, int computeThreads, CacheBudget cacheBudget, int cacheLoaderThreads,
      int kernelThreads, CacheMissPolicy cacheMissPolicy, int cacheBackgroundLoads) {
    this(modelDir, computeThreads, cacheBudget, cacheLoaderThreads, kernelThreads, cacheMissPolicy,
        cacheBackgroundLoads, true, 0, true);
  }

  /** Misses run cold, one background load at a time. */
  public ExpertNodeSettings(Path modelDir, int computeThreads, CacheBudget cacheBudget, int cacheLoaderThreads,
      int kernelThreads) {
    this(modelDir, computeThreads, cacheBudget, cacheLoaderThreads, kernelThreads, CacheMissPolicy.RUN_COLD, 1);
  }

  /** One kernel thread: each FFN, and each pass over a layer's calls, on its calling thread alone. */
  public ExpertNodeSettings(Path modelDir, int computeThreads, CacheBudget cacheBudget, int cacheLoaderThreads) {
    this(modelDir, computeThreads, cacheBudget, cacheLoaderThreads, 1);
  }

  /** Every expert warm, one loader thread. */
  public ExpertNodeSettings(Path modelDir, int computeThreads) {
    this(modelDir, computeThreads, CacheBudget.ALL, 1, 1);
  }

  /** Reads {@code moe.expert.*} from a full configuration (e.g. {@code system.settings().config()}). */
  public static ExpertNodeSettings fromConfig(Config config) {
    Config c = config.getConfig("moe.expert");
    String dir = c.getString("model-dir");
    if (dir.isBlank()) {
      throw new IllegalArgumentException("moe.expert.model-dir must name the checkpoint directory");
    }
    return new ExpertNodeSettings(Path.of(dir), c.getInt("compute-threads"), CacheBudget.parse(c, "cache.budget"),
        c.getInt("cache.loader-threads"), c.getInt("kernel-threads"),
        CacheMissPolicy.parse(c.getString("cache.on-miss")), c.getInt("cache.background-loads"),
        c.getBoolean("data-channel.enabled"), c.getInt("data-channel.port"), c.getBoolean("kernel-warm-up"));
  }

  /** The thread count to use: {@link #computeThreads}, or the available cores when it is 0. */
  public int effectiveComputeThreads() {
    return computeThreads > 0 ? computeThreads : Runtime.getRuntime().availableProcessors();
  }

  /** The kernel thread count to use: {@link #kernelThreads}, or the compute threads when it is 0. */
  public int effectiveKernelThreads() {
    return kernelThreads > 0 ? kernelThreads : effectiveComputeThreads();
  }
}
