package io.moecluster.core.model;

import io.moecluster.core.tensor.Matrix;
import java.util.function.UnaryOperator;

/**
 * The dense part of one decoder layer: what a router holds. The routed experts are not here;
 * they are reached through an {@link ExpertExecutor}.
 *
 * @param attentionNorm input_layernorm, {@code [hidden]}
 * @param ffnNorm post_attention_layernorm, {@code [hidden]}
 * @param router the gate, {@code [experts, hidden]}
 * @param sharedExpert Qwen2-MoE's always-on expert, or null
 * @param sharedExpertGate its sigmoid gate {@code [1, hidden]}, or null
 */
public record LayerWeights(
    float[] attentionNorm,
    AttentionWeights attention,
    float[] ffnNorm,
    Matrix router,
    ExpertWeights sharedExpert,
    Matrix sharedExpertGate) {

  /** This layer with every matrix passed through {@code place} once. */
  LayerWeights withMatrices(UnaryOperator<Matrix> place) {
    return new LayerWeights(attentionNorm, attention.withMatrices(place), ffnNorm, place.apply(router),
        sharedExpert == null ? null : sharedExpert.withMatrices(place),
        sharedExpertGate == null ? null : place.apply(sharedExpertGate));
  }
}
