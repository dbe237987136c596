package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.Kernels;

/**
 * The MoE router, as in HF {@code MixtralSparseMoeBlock}: softmax of the router logits in
 * float32, top-k, then renormalization of the k weights when the family asks for it
 * ({@code norm_topk_prob}; always for Mixtral). Ties go to the lower expert index.
 */
public final class Gate {
  private Gate() {}

  /**
   * @param logits {@code [rows, experts]} router logits; overwritten with the probabilities
   */
  public static Routing route(Kernels kernels, ModelConfig c, float[] logits, int rows) {
    int experts = c.numExperts();
    int k = c.topK();
    int[] chosen = new int[rows * k];
    float[] weights = new float[rows * k];
    for (int r = 0; r < rows; r++) {
      int base = r * experts;
      kernels.softmax(logits, base, experts);
      float sum = 0f;
      for (int slot = 0; slot < k; slot++) {
        int best = -1;
        for (int e = 0; e < experts; e++) {
          if (!taken(chosen, r * k, slot, e) && (best < 0 || logits[base + e] > logits[base + best])) {
            best = e;
          }
        }
        chosen[r * k + slot] = best;
        weights[r * k + slot] = logits[base + best];
        sum += logits[base + best];
      }
      if (c.normTopkProb()) {
        for (int slot = 0; slot < k; slot++) {
          weights[r * k + slot] /= sum;
        }
      }
    }
    return new Routing(rows, k, chosen, weights);
  }

  private static boolean taken(int[] chosen, int from, int count, int expert) {
    for (int i = 0; i < count; i++) {
      if (chosen[from + i] == expert) {
        return true;
      }
    }
    return false;
  }
}
