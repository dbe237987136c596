package io.moecluster.expert;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import java.util.List;
import java.util.Locale;

/**
 * Which backend an expert node computes on, read once from {@code moe.expert.backend} and
 * {@code moe.expert.cuda} (see the module's {@code reference.conf}).
 *
 * @param choice auto, cpu or cuda
 * @param devices the CUDA device ordinals to use; empty = every device
 * @param memoryBudget the device memory for expert weights per device: a size, or a share of the
 *     device's free memory when the node starts
 * @param stagingBytes the size of each of a device's two pinned upload buffers
 * @param registerCheckpoint whether to register the checkpoint's mappings with the driver, so
 *     that uploads read them by DMA instead of through the staging buffers (pins them in memory)
 */
public record ExpertBackendSettings(Choice choice, List<Integer> devices, CacheBudget memoryBudget, long stagingBytes,
    boolean registerCheckpoint) {

  /** {@code moe.expert.backend}. */
  public enum Choice {
    /** CUDA when a device is found, else the CPU. */
    AUTO,
    /** The CPU kernels. */
    CPU,
    /** CUDA; a start-up error when no device can be used. */
    CUDA;

    /** Parses auto, cpu or cuda (any case); IllegalArgumentException naming them otherwise. */
    public static Choice parse(String s) {
      try {
        return valueOf(s.trim().toUpperCase(Locale.ROOT));
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("moe.expert.backend must be auto, cpu or cuda, got '" + s + "'");
      }
    }
  }

  /** The CPU backend, whatever the machine has. */
  public static final ExpertBackendSettings CPU =
      new ExpertBackendSettings(Choice.CPU, List.of(), CacheBudget.ofPercent(80), 32L << 20, false);

  public ExpertBackendSettings {
    devices = List.copyOf(devices);
    for (int d : devices) {
      if (d < 0) {
        throw new IllegalArgumentException("moe.expert.cuda.devices must be device ordinals >= 0, got " + d);
      }
    }
    if (stagingBytes < 4096) {
      throw new IllegalArgumentException("moe.expert.cuda.staging-buffer must be at least 4KiB, got " + stagingBytes);
    }
  }

  /** Reads {@code moe.expert.backend} and {@code moe.expert.cuda.*} from a full configuration. */
  public static ExpertBackendSettings fromConfig(Config config) {
    Config c = config.getConfig("moe.expert");
    Choice choice = Choice.parse(c.getString("backend"));
    List<Integer> devices;
    try {
      devices = c.getIntList("cuda.devices");
    } catch (ConfigException e) {
      throw new IllegalArgumentException("moe.expert.cuda.devices must be a list of device ordinals like [0, 1]");
    }
    String raw = c.getValue("cuda.memory-budget").unwrapped().toString().trim();
    CacheBudget budget;
    if (raw.endsWith("%")) {
      double percent;
      try {
        percent = Double.parseDouble(raw.substring(0, raw.length() - 1).trim());
      } catch (NumberFormatException e) {
        percent = Double.NaN;
      }
      if (!(percent > 0 && percent <= 100)) {
        throw new IllegalArgumentException(
            "moe.expert.cuda.memory-budget must be a share in (0%, 100%] or a size, got '" + raw + "'");
      }
      budget = CacheBudget.ofPercent(percent);
    } else {
      try {
        budget = CacheBudget.ofBytes(c.getBytes("cuda.memory-budget"));
      } catch (ConfigException e) {
        throw new IllegalArgumentException(
            "moe.expert.cuda.memory-budget must be a size (20GiB) or a share of free device memory (80%), got '"
                + raw + "'");
      }
    }
    long staging;
    try {
      staging = c.getBytes("cuda.staging-buffer");
    } catch (ConfigException e) {
      throw new IllegalArgumentException("moe.expert.cuda.staging-buffer must be a size like 32MiB");
    }
    boolean register;
    try {
      register = c.getBoolean("cuda.register-checkpoint");
    } catch (ConfigException e) {
      throw new IllegalArgumentException("moe.expert.cuda.register-checkpoint must be true or false");
    }
    return new ExpertBackendSettings(choice, devices, budget, staging, register);
  }
}
