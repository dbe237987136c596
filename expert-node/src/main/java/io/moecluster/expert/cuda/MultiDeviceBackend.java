package io.moecluster.expert.cuda;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.expert.ExpertBackend;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Collectors;

/**
 * Several GPUs of one node: one backend per device, each expert pinned to one of them by (layer,
 * expert), so the experts (and their device memory) spread evenly and a given expert is always
 * resident on the same device.
 */
public final class MultiDeviceBackend implements ExpertBackend {
  private final List<? extends ExpertBackend> devices;

  public MultiDeviceBackend(List<? extends ExpertBackend> devices) {
    if (devices.isEmpty()) {
      throw new IllegalArgumentException("a multi-device backend needs at least one device");
    }
    this.devices = List.copyOf(devices);
  }

  /** The device index of (layer, expert): consecutive experts of a layer go to consecutive devices. */
  public static int deviceOf(int layer, int expert, int deviceCount) {
    return Math.floorMod(expert + layer * 7919, deviceCount);
  }

  ExpertBackend backendOf(int layer, int expert) {
    return devices.get(deviceOf(layer, expert, devices.size()));
  }

  @Override
  public String description() {
    return devices.stream().map(ExpertBackend::description).collect(Collectors.joining(", "));
  }

  @Override
  public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
    return backendOf(layer, expert).forward(layer, expert, weights, x, rows);
  }

  @Override
  public void prefetch(int layer, int expert, ExpertWeights weights) {
    backendOf(layer, expert).prefetch(layer, expert, weights);
  }

  @Override
  public void registerHostMemory(List<MemorySegment> regions) {
    devices.forEach(b -> b.registerHostMemory(regions));
  }

  @Override
  public void close() {
    RuntimeException first = null;
    for (ExpertBackend b : devices) {
      try {
        b.close();
      } catch (RuntimeException e) {
        if (first == null) {
          first = e;
        } else {
          first.addSuppressed(e);
        }
      }
    }
    if (first != null) {
      throw first;
    }
  }
}
