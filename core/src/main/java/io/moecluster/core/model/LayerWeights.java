package io.moecluster.core.model;

import io.moecluster.core.tensor.Matrix;

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
    Matrix sharedExpertGate) {}
