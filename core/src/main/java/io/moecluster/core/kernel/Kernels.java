package io.moecluster.core.kernel;

import io.moecluster.core.tensor.Matrix;
import java.util.Objects;

/**
 * The numeric kernels of the forward pass. {@link ScalarKernels} is the plain-loop oracle that
 * every fast implementation is tested against; {@link VectorKernels} is the Vector API one that
 * runs in production, parallel over output rows.
 *
 * <p><b>Batch invariance.</b> Every implementation computes each output element with a reduction
 * order that depends only on the operand lengths, never on how many rows share the batch or how
 * the work is split over threads: row {@code i} of {@link #matMul} is bit-identical to
 * {@link #matVec} on that row alone.
 *
 * <p>Activations are heap {@code float[]} with explicit offsets; weights are {@link Matrix} views
 * in Hugging Face {@code [out, in]} layout.
 */
public interface Kernels {

  /** {@code out[outOff + r] = sum_c w[r, c] * x[xOff + c]} for every row r of w. */
  void matVec(Matrix w, float[] x, int xOff, float[] out, int outOff);

  /**
   * Batched product: {@code x} holds {@code n} rows of {@code w.cols()} floats, {@code out}
   * receives {@code n} rows of {@code w.rows()} floats: {@code out[i, r] = dot(w[r, :], x[i, :])}.
   */
  void matMul(Matrix w, float[] x, int n, float[] out);

  /**
   * Several products at once: {@code matMul(ws[j], xs[j], ns[j], outs[j])} for every {@code j},
   * with exactly the results of those separate calls. An implementation may run them all in one
   * parallel pass (one hand-off to its threads instead of one per product). The same input array
   * may be given for several products (q, k and v of the same rows).
   */
  default void matMulAll(Matrix[] ws, float[][] xs, int[] ns, float[][] outs) {
    for (int j = 0; j < ws.length; j++) {
      matMul(ws[j], xs[j], ns[j], outs[j]);
    }
  }

  /**
   * The SwiGLU projections of several experts at once: for every {@code j},
   * {@code hs[j] = siluMul(matMul(gates[j], xs[j]), matMul(ups[j], xs[j]))}, {@code [ns[j],
   * gates[j].rows()]}, with exactly the results of those separate calls ({@link #siluMul} is
   * element-wise). {@code ups[j]} must have the shape of {@code gates[j]}.
   */
  default void swiGluAll(Matrix[] gates, Matrix[] ups, float[][] xs, int[] ns, float[][] hs) {
    for (int j = 0; j < gates.length; j++) {
      float[] up = new float[ns[j] * ups[j].rows()];
      matMul(gates[j], xs[j], ns[j], hs[j]);
      matMul(ups[j], xs[j], ns[j], up);
      siluMul(hs[j], up, ns[j] * gates[j].rows());
    }
  }

  /** Positions per block of a KV cache's keys: the layout {@link #attendGroup} reads. */
  int KV_BLOCK = 16;

  /** {@code len} rounded up to whole {@link #KV_BLOCK}s: a score row's stride in {@link #attendGroup}. */
  static int kvPadded(int len) {
    return (len + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK;
  }

  /** Where element {@code i} of position {@code t}'s key lies in the blocked layout of {@link #attendGroup}. */
  static int keyIndex(int t, int i, int kvDim) {
    return (t / KV_BLOCK) * kvDim * KV_BLOCK + i * KV_BLOCK + t % KV_BLOCK;
  }

  /**
   * Causal attention of one row for the {@code group} query heads that share a KV head: for each
   * head {@code j < group}, {@code p = softmax(scale * (q_j . k_t))} over positions
   * {@code t < len}, and {@code out_j = sum_t p_t * v_t}.
   *
   * <p>Keys come in blocks of {@link #KV_BLOCK} positions, dimension-major within a block: element
   * {@code i} of position {@code t}'s key is {@code keys[keyIndex(t, i, kvDim)]}. One vector load then brings one dimension of consecutive positions,
   * so the scores of a block are vector lanes and need no reduction across lanes (a dot product per
   * position spent most of its time reducing). Values are row-major: {@code values[t * kvDim + i]}.
   *
   * <p>Each score is {@code scale} times one chain of fused multiply-adds over the dimensions in
   * order, and each output element one chain over the positions in order, in every implementation
   * and at every vector width: a row's result depends on nothing but its own inputs.
   *
   * @param q the group's query heads, head {@code j} at {@code qOff + j * headDim}
   * @param kvOff where the KV head starts within a position, {@code kvHead * headDim}
   * @param scores scratch, at least {@code group * kvPadded(len)} floats
   * @param out written (not added to) at {@code outOff + j * headDim}
   */
  void attendGroup(float[] q, int qOff, int group, int headDim, float[] keys, float[] values, int kvDim,
      int kvOff, int len, float scale, float[] scores, float[] out, int outOff);

  /**
   * The bounds {@link #attendGroup} needs, checked before any kernel indexes the arrays (an
   * {@link IndexOutOfBoundsException} naming the range, never a write past it); returns
   * {@code kvPadded(len)}.
   */
  static int checkAttendGroup(float[] q, int qOff, int group, int headDim, float[] keys, float[] values, int kvDim,
      int kvOff, int len, float[] scores, float[] out, int outOff) {
    int padded = kvPadded(len);
    Objects.checkFromIndexSize(kvOff, headDim, kvDim);
    Objects.checkFromIndexSize(qOff, group * headDim, q.length);
    Objects.checkFromIndexSize(outOff, group * headDim, out.length);
    Objects.checkFromIndexSize(0, group * padded, scores.length);
    Objects.checkFromIndexSize(0, padded / KV_BLOCK * kvDim * KV_BLOCK, keys.length);
    Objects.checkFromIndexSize(0, len * kvDim, values.length);
    return padded;
  }

  /**
   * RMSNorm: {@code out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]} over {@code size}
   * elements starting at the given offsets ({@code out} may be {@code x}).
   */
  void rmsNorm(float[] out, int outOff, float[] x, int xOff, float[] weight, int size, float eps);

  /** In-place softmax over {@code x[off, off + length)}, computed in float32 with the max shift. */
  void softmax(float[] x, int off, int length);

  /** In-place SwiGLU gate: {@code gate[i] = silu(gate[i]) * up[i]} for {@code i < length}. */
  void siluMul(float[] gate, float[] up, int length);

  /**
   * Rotary embedding, Hugging Face {@code rotate_half} convention, applied in place to
   * {@code heads} consecutive vectors of {@code headDim} floats starting at {@code off}: for
   * {@code i < headDim/2}, with {@code c = cos[i], s = sin[i]}:
   * {@code x1' = x1*c - x2*s, x2' = x2*c + x1*s} where {@code x1 = v[i], x2 = v[i + headDim/2]}.
   * {@code cos} and {@code sin} hold {@code headDim/2} values for the row's position.
   */
  void rope(float[] x, int off, int heads, int headDim, float[] cos, float[] sin);

  /**
   * Runs {@code task.accept(i)} for every {@code i < tasks}, possibly on several threads at once
   * (attention over rows and KV heads). Each task must depend only on its own index and write only
   * its own outputs; it may call the element-wise kernels but not the matrix products.
   */
  default void forEach(int tasks, java.util.function.IntConsumer task) {
    for (int i = 0; i < tasks; i++) {
      task.accept(i);
    }
  }

  /** Threads this implementation spreads {@link #matVec} and {@link #matMul} over. */
  int threads();

  /**
   * The caller is about to wait on work elsewhere (experts in other processes) and will hand out
   * no product for a while: idle helper threads stop polling for the next one now, rather than
   * hold a core that the processes doing that work may need. Changes no result.
   */
  default void rest() {}
}
