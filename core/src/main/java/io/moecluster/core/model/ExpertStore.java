package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.WeightNames;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.safetensors.TensorInfo;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Finds one routed expert's weights in a mapped checkpoint. Nothing is read until the kernels
 * touch the pages, so an expert node maps the whole checkpoint but only pages in the experts it
 * hosts.
 */
public final class ExpertStore {
  private final SafeTensors tensors;
  private final ModelConfig config;
  private final WeightNames names;
  // The F32 copies of F16 experts, by layer * experts + expert.
  private final Map<Long, ExpertWeights> widened = new ConcurrentHashMap<>();

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

  /**
   * Views of the expert's three matrices, shape-checked. F16 ones are widened to an F32 copy (the
   * kernels take F32 and BF16), once per expert: callers ask on every cache miss and prefetch hint.
   */
  public ExpertWeights expert(int layer, int expert) {
    checkExpert(layer, expert);
    if (!stored(layer, expert).contains(DType.F16)) {
      return views(layer, expert);
    }
    return widened.computeIfAbsent((long) layer * config.numExperts() + expert, k -> views(layer, expert));
  }

  /**
   * The bytes {@link #expert} holds for this expert (F16 counted widened), from the checkpoint's
   * header alone: sizing every expert of a model converts nothing.
   */
  public long expertBytes(int layer, int expert) {
    checkExpert(layer, expert);
    long bytes = 0;
    for (String name : names(layer, expert)) {
      TensorInfo t = tensors.info(name);
      bytes += t.elementCount() * (t.dtype() == DType.F16 ? Float.BYTES : t.dtype().byteSize());
    }
    return bytes;
  }

  private List<DType> stored(int layer, int expert) {
    return names(layer, expert).stream().map(n -> tensors.info(n).dtype()).toList();
  }

  private List<String> names(int layer, int expert) {
    return List.of(names.expertGate(layer, expert), names.expertUp(layer, expert), names.expertDown(layer, expert));
  }

  private void checkExpert(int layer, int expert) {
    if (layer < 0 || layer >= config.numLayers() || expert < 0 || expert >= config.numExperts()) {
      throw new IllegalArgumentException(
          "no expert " + layer + "/" + expert + " (layers " + config.numLayers() + ", experts "
              + config.numExperts() + ")");
    }
  }

  private ExpertWeights views(int layer, int expert) {
    int hidden = config.hiddenSize();
    int ffn = config.expertIntermediateSize();
    return new ExpertWeights(
        tensors.matrix(names.expertGate(layer, expert), ffn, hidden),
        tensors.matrix(names.expertUp(layer, expert), ffn, hidden),
        tensors.matrix(names.expertDown(layer, expert), hidden, ffn));
  }
}
