package io.moecluster.expert;

import com.typesafe.config.Config;
import java.nio.file.Path;

/**
 * The settings of an expert node, read once from {@code moe.expert} (see the module's
 * {@code reference.conf}).
 *
 * @param modelDir the checkpoint directory every expert entity of this node reads its weights from
 * @param computeThreads threads of the compute executor (and of the kernels); 0 = all cores
 */
public record ExpertNodeSettings(Path modelDir, int computeThreads) {

  public ExpertNodeSettings {
    if (modelDir == null || modelDir.toString().isEmpty()) {
      throw new IllegalArgumentException("moe.expert.model-dir must name the checkpoint directory");
    }
    if (computeThreads < 0) {
      throw new IllegalArgumentException(
          "moe.expert.compute-threads must be >= 0 (0 = all cores), got " + computeThreads);
    }
  }

  /** Reads {@code moe.expert.*} from a full configuration (e.g. {@code system.settings().config()}). */
  public static ExpertNodeSettings fromConfig(Config config) {
    Config c = config.getConfig("moe.expert");
    String dir = c.getString("model-dir");
    if (dir.isBlank()) {
      throw new IllegalArgumentException("moe.expert.model-dir must name the checkpoint directory");
    }
    return new ExpertNodeSettings(Path.of(dir), c.getInt("compute-threads"));
  }

  /** The thread count to use: {@link #computeThreads}, or the available cores when it is 0. */
  public int effectiveComputeThreads() {
    return computeThreads > 0 ? computeThreads : Runtime.getRuntime().availableProcessors();
  }
}
