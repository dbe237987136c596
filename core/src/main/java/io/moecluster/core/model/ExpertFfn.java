package io.moecluster.core.model;

import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.tensor.Matrix;

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
    return forwardAll(kernels, new ExpertWeights[] {w}, new float[][] {x}, new int[] {rows})[0];
  }

  /**
   * Several experts over their own rows at once, exactly {@link #forward} of each: the gate and
   * up projections of all of them in one pass of the kernels, then all the down projections.
   *
   * @param xs {@code xs[j]} is {@code [rows[j], hidden]}
   * @return one {@code [rows[j], hidden]} output per expert
   */
  public static float[][] forwardAll(Kernels kernels, ExpertWeights[] ws, float[][] xs, int[] rows) {
    int m = ws.length;
    var gates = new Matrix[m];
    var ups = new Matrix[m];
    var downs = new Matrix[m];
    float[][] hs = new float[m][];
    float[][] outs = new float[m][];
    for (int j = 0; j < m; j++) {
      gates[j] = ws[j].gate();
      ups[j] = ws[j].up();
      downs[j] = ws[j].down();
      hs[j] = new float[rows[j] * ws[j].ffnSize()]; // [rows, ffn]
      outs[j] = new float[rows[j] * ws[j].hiddenSize()]; // [rows, hidden]
    }
    kernels.swiGluAll(gates, ups, xs, rows, hs);
    kernels.matMulAll(downs, hs, rows, outs);
    return outs;
  }
}
