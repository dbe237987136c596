package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.WeightNames;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.tensor.Matrix;

/**
 * Finds one routed expert's weights in a mapped checkpoint. Nothing is read until the kernels
 * touch the pages, so an expert node maps the whole checkpoint but only pages in the experts it
 * hosts.
 */
public final class ExpertStore {
  private final SafeTensors tensors;
  private final ModelConfig config;
  private final WeightNames names;

  public ExpertStore(SafeTensors tensors, ModelConfig config) {
    this.tensors = tensors;
    this.config = config;
    this.names = config.weightNames();
  }

  public ModelConfig config() {
    return config;
  }

  /**
   * Pages in the checkpoint bytes of {@code w} (from {@link #expert}) that are not resident; true
   * when some were not. See {@link SafeTensors#pageIn}.
   */
  public boolean pageIn(ExpertWeights w) {
    boolean paged = false;
    for (Matrix m : new Matrix[] {w.gate(), w.up(), w.down()}) {
      paged |= tensors.pageIn(m.data());
    }
    return paged;
  }

  /** Whether all the checkpoint bytes of {@code w} are resident in memory. */
  public boolean isResident(ExpertWeights w) {
    return tensors.isResident(w.gate().data()) && tensors.isResident(w.up().data())
        && tensors.isResident(w.down().data());
  }

  /** Views of the expert's three matrices, shape-checked. */
  public ExpertWeights expert(int layer, int expert) {
    if (layer < 0 || layer >= config.numLayers() || expert < 0 || expert >= config.numExperts()) {
      throw new IllegalArgumentException(
          "no expert " + layer + "/" + expert + " (layers " + config.numLayers() + ", experts "
              + config.numExperts() + ")");
    }
    int hidden = config.hiddenSize();
    int ffn = config.expertIntermediateSize();
    return new ExpertWeights(
        tensors.matrix(names.expertGate(layer, expert), ffn, hidden),
        tensors.matrix(names.expertUp(layer, expert), ffn, hidden),
        tensors.matrix(names.expertDown(layer, expert), hidden, ffn));
  }
}
