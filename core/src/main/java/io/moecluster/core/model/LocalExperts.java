package io.moecluster.core.model;

import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.tensor.Matrix;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongConsumer;
import java.util.function.UnaryOperator;

/**
 * Runs experts in this process, from the mapped checkpoint or from copies of their weights
 * ({@link WeightPlacement}). The tasks of a layer run together: one parallel pass of the kernels
 * for all gate/up projections, one for the downs.
 */
public final class LocalExperts implements ExpertExecutor {
  private final ExpertStore store;
  private final Kernels kernels;
  private final UnaryOperator<Matrix> place; // null: the checkpoint's views
  private final ExpertWeights[][] cache; // [layer][expert], filled on first use

  /** Experts read in place from the mapped checkpoint. */
  public LocalExperts(ExpertStore store, Kernels kernels) {
    this(store, kernels, null);
  }

  /** Experts whose matrices pass through {@code place} once, on first use (e.g. a copy). */
  LocalExperts(ExpertStore store, Kernels kernels, UnaryOperator<Matrix> place) {
    this.store = store;
    this.kernels = kernels;
    this.place = place;
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

  /** Whether the experts run on copies of their weights. */
  public boolean copies() {
    return place != null;
  }

  /** Bytes of all the experts' weights in the checkpoint. */
  public long expertBytes() {
    long bytes = 0;
    for (int l = 0; l < cache.length; l++) {
      for (int e = 0; e < cache[l].length; e++) {
        bytes += store.expert(l, e).byteSize();
      }
    }
    return bytes;
  }

  /**
   * Loads every expert now rather than on first use (with copies: makes them all, so that no
   * request pays for a copy); reports the bytes of the experts loaded so far after each one.
   */
  public void loadAll(LongConsumer bytesDone) {
    long done = 0;
    for (int l = 0; l < cache.length; l++) {
      for (int e = 0; e < cache[l].length; e++) {
        done += weights(l, e).byteSize();
        bytesDone.accept(done);
      }
    }
  }

  private synchronized ExpertWeights weights(int layer, int expert) {
    ExpertWeights w = cache[layer][expert];
    if (w == null) {
      w = store.expert(layer, expert);
      if (place != null) {
        w = w.withMatrices(place);
      }
      cache[layer][expert] = w;
    }
    return w;
  }
}
