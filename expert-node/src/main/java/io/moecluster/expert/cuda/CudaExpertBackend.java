package io.moecluster.expert.cuda;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.expert.ExpertBackend;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import jcuda.driver.CUdeviceptr;

/**
 * The expert FFN on one GPU: the weights come from the device's {@link DeviceWeightTier} (uploaded
 * on the copy thread on first use or on a prefetch hint) and the kernels run on the device's
 * compute thread. An expert that cannot be on the device (F16 weights, larger than the budget, no
 * room left because every resident expert is in use, a failed upload) runs on the CPU backend on
 * the node's compute executor instead, so a request never fails for want of device memory.
 */
public final class CudaExpertBackend implements ExpertBackend {
  private final CudaDevice device;
  private final DeviceWeightTier<CUdeviceptr> tier;
  private final ExpertBackend cpu;
  private final Executor cpuExecutor;

  /**
   * @param budgetBytes the device memory budget of the weights
   * @param cpu the fallback (not owned: the node closes it)
   * @param cpuExecutor where fallback computations run
   */
  public CudaExpertBackend(CudaDevice device, long budgetBytes, ExpertBackend cpu, Executor cpuExecutor, String node) {
    this.device = device;
    this.cpu = cpu;
    this.cpuExecutor = cpuExecutor;
    this.tier = new DeviceWeightTier<>(budgetBytes, device, device, device.copyExecutor(), node,
        "cuda:" + device.info().ordinal());
  }

  @Override
  public String description() {
    return device.info().toString();
  }

  public DeviceWeightTier<CUdeviceptr> tier() {
    return tier;
  }

  public CudaDevice device() {
    return device;
  }

  @Override
  public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
    if (!LaunchPlan.supports(weights)) {
      tier.countCpuComputation();
      return cpu.forward(layer, expert, weights, x, rows);
    }
    return tier.acquire(layer, expert, weights).thenCompose(lease -> {
      if (lease == null) {
        return onCpu(layer, expert, weights, x, rows);
      }
      try {
        return CompletableFuture.supplyAsync(() -> device.forward(lease, weights, x, rows), device.computeExecutor())
            .whenComplete((out, err) -> lease.close());
      } catch (RejectedExecutionException e) {
        lease.close();
        return CompletableFuture.failedFuture(new IllegalStateException("the GPU backend is closed"));
      }
    });
  }

  private CompletableFuture<float[]> onCpu(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
    try {
      return CompletableFuture.supplyAsync(() -> cpu.forward(layer, expert, weights, x, rows), cpuExecutor)
          .thenCompose(f -> f);
    } catch (RejectedExecutionException e) {
      return CompletableFuture.failedFuture(new IllegalStateException("the expert node is shutting down"));
    }
  }

  @Override
  public void prefetch(int layer, int expert, ExpertWeights weights) {
    if (LaunchPlan.supports(weights)) {
      tier.prefetch(layer, expert, weights);
    }
  }

  @Override
  public void registerHostMemory(List<MemorySegment> regions) {
    device.onCopy(() -> {
      device.registerHostMemory(regions);
      return null;
    });
  }

  /** Frees the resident weights (queued on the copy thread first), then the device. Idempotent. */
  @Override
  public void close() {
    tier.close();
    device.close();
  }
}
