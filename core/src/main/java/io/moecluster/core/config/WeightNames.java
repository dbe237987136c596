package io.moecluster.core.config;

/** Hugging Face tensor names of one {@link ModelFamily}; every name the runtime reads is here. */
public record WeightNames(ModelFamily family) {

  private static String layer(int l) {
    return "model.layers." + l + ".";
  }

  public String embedTokens() {
    return "model.embed_tokens.weight";
  }

  public String finalNorm() {
    return "model.norm.weight";
  }

  public String lmHead() {
    return "lm_head.weight";
  }

  public String attentionNorm(int l) {
    return layer(l) + "input_layernorm.weight";
  }

  public String ffnNorm(int l) {
    return layer(l) + "post_attention_layernorm.weight";
  }

  /** {@code proj} is one of q, k, v, o. */
  public String attention(int l, char proj) {
    return layer(l) + "self_attn." + proj + "_proj.weight";
  }

  /** Bias of the q, k or v projection (Qwen2-MoE, or attention_bias). */
  public String attentionBias(int l, char proj) {
    return layer(l) + "self_attn." + proj + "_proj.bias";
  }

  /** {@code which} is q or k. */
  public String qkNorm(int l, char which) {
    return layer(l) + "self_attn." + which + "_norm.weight";
  }

  /** The router: {@code [num_experts, hidden]}. */
  public String router(int l) {
    return family == ModelFamily.MIXTRAL
        ? layer(l) + "block_sparse_moe.gate.weight"
        : layer(l) + "mlp.gate.weight";
  }

  /** w1 / gate_proj: {@code [ffn, hidden]}. */
  public String expertGate(int l, int e) {
    return family == ModelFamily.MIXTRAL
        ? layer(l) + "block_sparse_moe.experts." + e + ".w1.weight"
        : layer(l) + "mlp.experts." + e + ".gate_proj.weight";
  }

  /** w3 / up_proj: {@code [ffn, hidden]}. */
  public String expertUp(int l, int e) {
    return family == ModelFamily.MIXTRAL
        ? layer(l) + "block_sparse_moe.experts." + e + ".w3.weight"
        : layer(l) + "mlp.experts." + e + ".up_proj.weight";
  }

  /** w2 / down_proj: {@code [hidden, ffn]}. */
  public String expertDown(int l, int e) {
    return family == ModelFamily.MIXTRAL
        ? layer(l) + "block_sparse_moe.experts." + e + ".w2.weight"
        : layer(l) + "mlp.experts." + e + ".down_proj.weight";
  }

  /** Qwen2-MoE shared expert projections; {@code proj} is gate, up or down. */
  public String sharedExpert(int l, String proj) {
    return layer(l) + "mlp.shared_expert." + proj + "_proj.weight";
  }

  /** Qwen2-MoE shared expert's sigmoid gate: {@code [1, hidden]}. */
  public String sharedExpertGate(int l) {
    return layer(l) + "mlp.shared_expert_gate.weight";
  }
}
