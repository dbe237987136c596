package io.moecluster.expert;

import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertWeights;
import java.util.concurrent.CompletableFuture;

/**
 * The CPU backend: {@link ExpertFfn#forward} on the node's Vector API kernels, on the caller's
 * thread (the entity dispatcher or the compute executor), exactly the path expert nodes always
 * took, so its outputs are bit for bit those of the single-process generator. It does not own
 * the kernels: the node closes them.
 */
public final class CpuExpertBackend implements ExpertBackend {
  private final Kernels kernels;

  public CpuExpertBackend(Kernels kernels) {
    this.kernels = kernels;
  }

  @Override
  public String description() {
    return "cpu";
  }

  @Override
  public boolean warmsOnHints() {
    return false; // computes on the host views it is handed: only the weight cache can be warmed
  }

  @Override
  public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
    try {
      return CompletableFuture.completedFuture(ExpertFfn.forward(kernels, weights, x, rows));
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  @Override
  public void close() {}
}
