package io.moecluster.core.model;

import io.moecluster.core.tensor.Matrix;
import java.util.function.UnaryOperator;

/**
 * One layer's self-attention projections. Optional parts are null when the family has none.
 *
 * @param q {@code [heads * headDim, hidden]}
 * @param k {@code [kvHeads * headDim, hidden]}
 * @param v {@code [kvHeads * headDim, hidden]}
 * @param o {@code [hidden, heads * headDim]}
 * @param qBias {@code [heads * headDim]} or null (Qwen2-MoE has q/k/v biases)
 * @param kBias {@code [kvHeads * headDim]} or null
 * @param vBias {@code [kvHeads * headDim]} or null
 * @param qNorm {@code [headDim]} (per head) or {@code [heads * headDim]} (whole projection), or null
 * @param kNorm {@code [headDim]} or {@code [kvHeads * headDim]}, or null
 */
public record AttentionWeights(
    Matrix q,
    Matrix k,
    Matrix v,
    Matrix o,
    float[] qBias,
    float[] kBias,
    float[] vBias,
    float[] qNorm,
    float[] kNorm) {

  /** These projections with every matrix passed through {@code place} once. */
  AttentionWeights withMatrices(UnaryOperator<Matrix> place) {
    return new AttentionWeights(place.apply(q), place.apply(k), place.apply(v), place.apply(o), qBias, kBias, vBias,
        qNorm, kNorm);
  }
}
