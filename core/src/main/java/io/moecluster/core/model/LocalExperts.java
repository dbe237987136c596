package io.moecluster.core.model;

import io.moecluster.core.kernel.Kernels;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs experts in this process straight from the mapped checkpoint. Tasks run one after the
 * other; each is already parallel over its output rows inside the kernels.
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
    List<float[]> outputs = new ArrayList<>(tasks.size());
    for (ExpertTask task : tasks) {
      outputs.add(ExpertFfn.forward(kernels, weights(layer, task.expert()), task.input(), task.rows()));
    }
    return outputs;
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
