package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.QkNorm;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.tensor.Matrix;
import java.util.List;

/**
 * The dense half of a decoder layer for a batch of rows: RMSNorm, q/k/v projections (+ bias, +
 * q/k norm), RoPE, the KV cache write, causal grouped-query attention, the output projection and
 * the residual add; then the post-attention RMSNorm that feeds the gate and the experts. Every row
 * is computed on its own (batch invariance), each against its own sequence's cache.
 */
final class DenseLayer {
  private final ModelConfig c;
  private final Kernels kernels;
  private final LayerWeights w;
  private final int layer;

  DenseLayer(ModelConfig c, Kernels kernels, LayerWeights w, int layer) {
    this.c = c;
    this.kernels = kernels;
    this.w = w;
    this.layer = layer;
  }

  /**
   * Attention with its residual: {@code x += o(attention(norm(x)))}.
   *
   * @param x {@code [rows, hidden]}, updated in place
   * @param cos {@code [rows, headDim / 2]} rotary cosines of each row's position
   * @param sin {@code [rows, headDim / 2]}
   */
  void attention(List<StepRow> rows, float[] x, float[] cos, float[] sin) {
    int n = rows.size();
    int hidden = c.hiddenSize();
    int headDim = c.headDim();
    int qDim = c.numHeads() * headDim;
    int kvDim = c.numKvHeads() * headDim;
    AttentionWeights a = w.attention();

    float[] xb = new float[n * hidden]; // [rows, hidden]
    for (int r = 0; r < n; r++) {
      kernels.rmsNorm(xb, r * hidden, x, r * hidden, w.attentionNorm(), hidden, c.rmsNormEps());
    }
    float[] q = new float[n * qDim]; // [rows, heads * headDim]
    float[] k = new float[n * kvDim]; // [rows, kvHeads * headDim]
    float[] v = new float[n * kvDim]; // [rows, kvHeads * headDim]
    kernels.matMulAll(new Matrix[] {a.q(), a.k(), a.v()}, new float[][] {xb, xb, xb},
        new int[] {n, n, n}, new float[][] {q, k, v});
    addBias(q, a.qBias(), n);
    addBias(k, a.kBias(), n);
    addBias(v, a.vBias(), n);

    int half = headDim / 2;
    float[] rowCos = new float[half];
    float[] rowSin = new float[half];
    for (int r = 0; r < n; r++) {
      normalizeQk(q, r * qDim, a.qNorm(), c.numHeads());
      normalizeQk(k, r * kvDim, a.kNorm(), c.numKvHeads());
      System.arraycopy(cos, r * half, rowCos, 0, half);
      System.arraycopy(sin, r * half, rowSin, 0, half);
      kernels.rope(q, r * qDim, c.numHeads(), headDim, rowCos, rowSin);
      kernels.rope(k, r * kvDim, c.numKvHeads(), headDim, rowCos, rowSin);
      // KV cache write before any attention, so later rows of a prefill see earlier ones.
      StepRow row = rows.get(r);
      row.cache().store(layer, row.position(), k, r * kvDim, v, r * kvDim);
    }

    float[] att = new float[n * qDim]; // [rows, heads * headDim]
    float scale = (float) (1.0 / Math.sqrt(headDim));
    int kvHeads = c.numKvHeads();
    int group = c.queriesPerKvHead();
    // Every (row, KV head) pair on its own, with the query heads that share the KV head: spread
    // over the kernel threads.
    kernels.forEach(n * kvHeads, task -> {
      int r = task / kvHeads;
      int g = task % kvHeads;
      StepRow row = rows.get(r);
      int len = row.position() + 1;
      int heads = r * qDim + g * group * headDim; // the group's query heads, and their outputs
      kernels.attendGroup(q, heads, group, headDim, row.cache().keys(layer), row.cache().values(layer), kvDim,
          g * headDim, len, scale, new float[group * Kernels.kvPadded(len)], att, heads);
    });

    float[] o = new float[n * hidden]; // [rows, hidden]
    kernels.matMul(a.o(), att, n, o);
    for (int i = 0; i < o.length; i++) {
      x[i] += o[i]; // residual connection back into x
    }
  }

  private void addBias(float[] y, float[] bias, int n) {
    if (bias == null) {
      return;
    }
    int dim = bias.length;
    for (int r = 0; r < n; r++) {
      for (int i = 0; i < dim; i++) {
        y[r * dim + i] += bias[i];
      }
    }
  }

  private void normalizeQk(float[] y, int off, float[] weight, int heads) {
    if (c.qkNorm() == QkNorm.PER_HEAD) {
      for (int h = 0; h < heads; h++) {
        int o = off + h * c.headDim();
        kernels.rmsNorm(y, o, y, o, weight, c.headDim(), c.rmsNormEps());
      }
    } else if (c.qkNorm() == QkNorm.FULL) {
      kernels.rmsNorm(y, off, y, off, weight, heads * c.headDim(), c.rmsNormEps());
    }
  }

  /** The post-attention RMSNorm: the input of the gate and the experts. */
  float[] ffnInput(float[] x, int n) {
    int hidden = c.hiddenSize();
    float[] xb = new float[n * hidden];
    for (int r = 0; r < n; r++) {
      kernels.rmsNorm(xb, r * hidden, x, r * hidden, w.ffnNorm(), hidden, c.rmsNormEps());
    }
    return xb;
  }

  /** Router logits, {@code [rows, experts]}. */
  float[] routerLogits(float[] xb, int n) {
    float[] logits = new float[n * c.numExperts()];
    kernels.matMul(w.router(), xb, n, logits);
    return logits;
  }

  /** Adds Qwen2-MoE's shared expert, {@code sigmoid(gate·x) * ffn(x)}, to {@code moe}. */
  void addSharedExpert(float[] xb, int n, float[] moe) {
    if (w.sharedExpert() == null) {
      return;
    }
    int hidden = c.hiddenSize();
    float[] shared = ExpertFfn.forward(kernels, w.sharedExpert(), xb, n);
    float[] gate = new float[n]; // [rows, 1]
    kernels.matMul(w.sharedExpertGate(), xb, n, gate);
    for (int r = 0; r < n; r++) {
      float g = (float) (1.0 / (1.0 + Math.exp(-gate[r])));
      for (int i = 0; i < hidden; i++) {
        moe[r * hidden + i] += g * shared[r * hidden + i];
      }
    }
  }
}
