package io.moecluster.core.config;

/** Where a family applies RMSNorm to queries and keys before RoPE. */
public enum QkNorm {
  /** Mixtral, Qwen2-MoE: no q/k norm. */
  NONE,
  /** Qwen3-MoE: RMSNorm over each head's {@code head_dim} values, weight {@code [head_dim]}. */
  PER_HEAD,
  /** OLMoE: RMSNorm over the whole projection, weight {@code [heads * head_dim]}. */
  FULL
}
