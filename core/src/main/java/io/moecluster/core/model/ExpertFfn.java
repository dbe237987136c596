package io.moecluster.core.model;

import io.moecluster.core.kernel.Kernels;

/**
 * The SwiGLU expert feed-forward network over a batch of rows: {@code out = down(silu(gate·x) ⊙
 * up·x)}. Each row's result depends only on that row (the kernels are batch invariant), so the
 * same row gives the same output whichever other rows an expert request carries.
 */
public final class ExpertFfn {
  private ExpertFfn() {}

  /**
   * @param x {@code [rows, hidden]}
   * @return {@code [rows, hidden]}
   */
  public static float[] forward(Kernels kernels, ExpertWeights w, float[] x, int rows) {
    int ffn = w.ffnSize();
    float[] gate = new float[rows * ffn]; // [rows, ffn]
    float[] up = new float[rows * ffn]; // [rows, ffn]
    kernels.matMul(w.gate(), x, rows, gate);
    kernels.matMul(w.up(), x, rows, up);
    kernels.siluMul(gate, up, rows * ffn);
    float[] out = new float[rows * w.hiddenSize()]; // [rows, hidden]
    kernels.matMul(w.down(), gate, rows, out);
    return out;
  }
}
