package io.moecluster.expert;

import io.moecluster.expert.cuda.CudaDevice;
import io.moecluster.expert.cuda.CudaExpertBackend;
import io.moecluster.expert.cuda.CudaProbe;
import io.moecluster.expert.cuda.MultiDeviceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Picks the node's {@link ExpertBackend} at start-up from {@code moe.expert.backend}: {@code cpu};
 * {@code cuda}, where no usable device is a start-up error with a message (never a crash); or
 * {@code auto}, CUDA when the probe finds a device, else the CPU, with one log line either way.
 */
public final class ExpertBackends {
  private static final Logger log = LoggerFactory.getLogger(ExpertBackends.class);

  private ExpertBackends() {}

  /** {@code moe.expert.backend = cuda} and no device can be used: a configuration the user must change. */
  public static final class BackendUnavailableException extends IllegalArgumentException {
    BackendUnavailableException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /** Opens the backend of one device (the real one opens a {@link CudaDevice}); tests pass fakes. */
  @FunctionalInterface
  public interface DeviceOpener {
    ExpertBackend open(CudaProbe.Device device);
  }

  /** Selects with the machine's real probe and devices; {@code cpu} runs the FFNs where no GPU does. */
  public static ExpertBackend select(ExpertBackendSettings settings, CpuExpertBackend cpu, Executor compute,
      String node) {
    if (settings.choice() == ExpertBackendSettings.Choice.CPU) {
      log.info("Expert node {}: expert FFNs run on the CPU (moe.expert.backend = cpu)", node);
      return cpu;
    }
    return select(settings, CudaProbe.probe(), cpu, d -> openCuda(d, settings, cpu, compute, node), node);
  }

  /**
   * The selection itself, over a probe result and a device opener.
   *
   * @param cpu the CPU backend (also the CUDA backends' fallback)
   */
  public static ExpertBackend select(ExpertBackendSettings settings, CudaProbe.Result probe, ExpertBackend cpu,
      DeviceOpener opener, String node) {
    ExpertBackendSettings.Choice choice = settings.choice();
    if (choice == ExpertBackendSettings.Choice.CPU) {
      log.info("Expert node {}: expert FFNs run on the CPU (moe.expert.backend = cpu)", node);
      return cpu;
    }
    if (!probe.available()) {
      if (choice == ExpertBackendSettings.Choice.CUDA) {
        throw new BackendUnavailableException("moe.expert.backend = cuda, but no CUDA device can be used: "
            + probe.problem() + ". Run on a machine with an NVIDIA GPU and driver, or use --backend cpu (or auto)",
            null);
      }
      log.info("Expert node {}: no CUDA device ({}); expert FFNs run on the CPU", node, probe.problem());
      return cpu;
    }
    List<CudaProbe.Device> devices = pick(probe.devices(), settings.devices());
    List<ExpertBackend> opened = new ArrayList<>();
    try {
      for (CudaProbe.Device d : devices) {
        opened.add(opener.open(d));
      }
    } catch (RuntimeException e) {
      for (ExpertBackend b : opened) {
        try {
          b.close();
        } catch (RuntimeException suppressed) {
          e.addSuppressed(suppressed);
        }
      }
      if (choice == ExpertBackendSettings.Choice.CUDA) {
        throw new BackendUnavailableException("moe.expert.backend = cuda, but the GPU could not be set up: " + e
            + ". Check the NVIDIA driver (CUDA " + CudaProbe.MIN_DRIVER_VERSION / 1000 + ".0 or newer), or use"
            + " --backend cpu", e);
      }
      log.warn("Expert node {}: CUDA device found but could not be set up ({}); expert FFNs run on the CPU", node,
          e.toString());
      return cpu;
    }
    ExpertBackend backend = opened.size() == 1 ? opened.get(0) : new MultiDeviceBackend(opened);
    log.info("Expert node {}: expert FFNs run on {} (moe.expert.backend = {})", node, backend.description(),
        choice.name().toLowerCase(java.util.Locale.ROOT));
    return backend;
  }

  /** The probed devices that {@code moe.expert.cuda.devices} names (all when empty). */
  static List<CudaProbe.Device> pick(List<CudaProbe.Device> found, List<Integer> wanted) {
    if (wanted.isEmpty()) {
      return found;
    }
    List<CudaProbe.Device> picked = new ArrayList<>();
    for (int ordinal : wanted) {
      CudaProbe.Device d = found.stream().filter(x -> x.ordinal() == ordinal).findFirst().orElseThrow(() ->
          new IllegalArgumentException("moe.expert.cuda.devices names device " + ordinal + ", but this machine has "
              + found.size() + " CUDA device(s): " + found));
      if (!picked.contains(d)) {
        picked.add(d);
      }
    }
    return picked;
  }

  private static ExpertBackend openCuda(CudaProbe.Device d, ExpertBackendSettings settings, ExpertBackend cpu,
      Executor compute, String node) {
    CudaDevice device = CudaDevice.open(d, settings.stagingBytes());
    try {
      long free = device.memoryInfo()[0];
      // A share of the memory free now, minus the activation buffers' headroom (256 MiB).
      long budget = settings.memoryBudget().resolve(Math.max(0, free - (256L << 20)));
      log.info("Expert node {}: {} has {} MiB free; expert weights may use {} MiB (moe.expert.cuda.memory-budget = {})",
          node, d, free >> 20, budget >> 20, settings.memoryBudget());
      return new CudaExpertBackend(device, budget, cpu, compute, node);
    } catch (RuntimeException e) {
      device.close();
      throw e;
    }
  }
}
