package io.moecluster.expert;

import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertWeights;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * The CPU backend: {@link ExpertFfn#forwardAll} on the node's Vector API kernels, led by the
 * caller's thread (the data channel's reader, the entity dispatcher or the compute executor), so
 * its outputs are bit for bit those of the single-process generator, which computes a layer's
 * experts the same way. The calls of a layer that reach the data channel together run in one
 * pass over all the node's kernel threads ({@link #forwardAll}). A call computed alone (through
 * Artery, or after a load) runs on its own thread only: such calls run side by side on the
 * entity dispatcher's threads, and a fork and join per product cost more than it saved there
 * (docs/PERFORMANCE.md, "Before the data channel"). It does not own the kernels: the node closes
 * them.
 */
public final class CpuExpertBackend implements ExpertBackend {
  private final Kernels passes;
  private final Kernels alone;

  /** One set of kernels for every call. */
  public CpuExpertBackend(Kernels kernels) {
    this(kernels, kernels);
  }

  /**
   * @param passes the kernels of {@link #forwardAll}, over the node's kernel threads
   * @param alone the kernels of {@link #forward}, on the calling thread alone
   */
  public CpuExpertBackend(Kernels passes, Kernels alone) {
    this.passes = passes;
    this.alone = alone;
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
      return CompletableFuture.completedFuture(ExpertFfn.forward(alone, weights, x, rows));
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /**
   * All the calls in two passes of the kernels (gate/up, then down) shared out over their threads,
   * as the single process computes a layer's experts: one fork and join per pass instead of one
   * per product of each expert. Then the kernels' helpers stop polling for more: the node's next
   * calls come after the router's next layer, and until then the cores are the router's and the
   * other nodes' where they share a machine, as in the measurements of docs/PERFORMANCE.md ("A
   * node's calls of a layer in one pass"). On a machine of its own this costs the helpers a
   * wake-up per layer, which they pay anyway whenever the router takes longer than their 200 µs
   * spin between two layers; not measured there.
   */
  @Override
  public List<CompletableFuture<float[]>> forwardAll(int[] layers, int[] experts, ExpertWeights[] weights,
      float[][] xs, int[] rows) {
    List<CompletableFuture<float[]>> out = new ArrayList<>(weights.length);
    try {
      for (float[] result : ExpertFfn.forwardAll(passes, weights, xs, rows)) {
        out.add(CompletableFuture.completedFuture(result));
      }
    } catch (RuntimeException e) {
      out.clear();
      for (int j = 0; j < weights.length; j++) {
        out.add(CompletableFuture.failedFuture(e));
      }
    } finally {
      passes.rest();
    }
    return out;
  }

  @Override
  public void close() {}
}
