package io.moecluster.core.model;

import io.moecluster.core.kernel.Kernels;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs experts in this process straight from the mapped checkpoint. The tasks of a layer run
 * together: one parallel pass of the kernels for all gate/up projections, one for the downs.
 */
public final class LocalExperts implements ExpertExecutor {
  private final ExpertStore store;
  private final Kernels kernels;
  private final ExpertWeights[][] cache; // [layer][expert], filled on first use

  public LocalExperts(ExpertStore store, Kernels kernels) {
    this.store = store;
    this.kernels = kernels;
    this.cache = new ExpertWeights[store.config().numLayers()][store.config().numExperts()];
  }

  @Override
  public List<float[]> run(int layer, List<ExpertTask> tasks) {
    int m = tasks.size();
    ExpertWeights[] ws = new ExpertWeights[m];
    float[][] xs = new float[m][];
    int[] rows = new int[m];
    for (int j = 0; j < m; j++) {
      ExpertTask task = tasks.get(j);
      ws[j] = weights(layer, task.expert());
      xs[j] = task.input();
      rows[j] = task.rows();
    }
    // All of the layer's experts in two passes of the kernels (gate/up, then down).
    return new ArrayList<>(List.of(ExpertFfn.forwardAll(kernels, ws, xs, rows)));
  }

  private ExpertWeights weights(int layer, int expert) {
    ExpertWeights w = cache[layer][expert];
    if (w == null) {
      w = store.expert(layer, expert);
      cache[layer][expert] = w;
    }
    return w;
  }
}
