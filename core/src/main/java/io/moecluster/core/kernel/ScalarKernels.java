package io.moecluster.core.kernel;

import io.moecluster.core.tensor.Matrix;
import java.util.Objects;

/**
 * The oracle: plain loops written straight from the definitions in {@link Kernels}, single
 * threaded, float arithmetic with sums in index order. Slow and obviously correct; every fast
 * implementation is tested against it.
 */
public final class ScalarKernels implements Kernels {

  @Override
  public void matVec(Matrix w, float[] x, int xOff, float[] out, int outOff) {
    Objects.checkFromIndexSize(xOff, w.cols(), x.length);
    Objects.checkFromIndexSize(outOff, w.rows(), out.length);
    for (int r = 0; r < w.rows(); r++) {
      float sum = 0f;
      for (int c = 0; c < w.cols(); c++) {
        sum += w.get(r, c) * x[xOff + c];
      }
      out[outOff + r] = sum;
    }
  }

  @Override
  public void matMul(Matrix w, float[] x, int n, float[] out) {
    Objects.checkFromIndexSize(0, Math.multiplyExact(n, w.cols()), x.length);
    Objects.checkFromIndexSize(0, Math.multiplyExact(n, w.rows()), out.length);
    for (int i = 0; i < n; i++) {
      matVec(w, x, i * w.cols(), out, i * w.rows());
    }
  }

  /** Dot product of two float ranges. */
  public float dot(float[] a, int aOff, float[] b, int bOff, int length) {
    Objects.checkFromIndexSize(aOff, length, a.length);
    Objects.checkFromIndexSize(bOff, length, b.length);
    float sum = 0f;
    for (int i = 0; i < length; i++) {
      sum += a[aOff + i] * b[bOff + i];
    }
    return sum;
  }

  @Override
  public void rmsNorm(float[] out, int outOff, float[] x, int xOff, float[] weight, int size, float eps) {
    Objects.checkFromIndexSize(outOff, size, out.length);
    Objects.checkFromIndexSize(xOff, size, x.length);
    Objects.checkFromIndexSize(0, size, weight.length);
    float ss = 0f;
    for (int i = 0; i < size; i++) {
      ss += x[xOff + i] * x[xOff + i];
    }
    float inv = (float) (1.0 / Math.sqrt(ss / size + eps));
    for (int i = 0; i < size; i++) {
      out[outOff + i] = x[xOff + i] * inv * weight[i];
    }
  }

  @Override
  public void attendGroup(float[] q, int qOff, int group, int headDim, float[] keys, float[] values, int kvDim,
      int kvOff, int len, float scale, float[] scores, float[] out, int outOff) {
    int padded =
        Kernels.checkAttendGroup(q, qOff, group, headDim, keys, values, kvDim, kvOff, len, scores, out, outOff);
    for (int j = 0; j < group; j++) {
      int qh = qOff + j * headDim;
      int s0 = j * padded;
      for (int t = 0; t < len; t++) {
        int k0 = Kernels.keyIndex(t, kvOff, kvDim);
        float s = 0f;
        for (int d = 0; d < headDim; d++) {
          s = Math.fma(q[qh + d], keys[k0 + d * KV_BLOCK], s);
        }
        scores[s0 + t] = s * scale;
      }
      softmax(scores, s0, len);
      int oh = outOff + j * headDim;
      for (int d = 0; d < headDim; d++) {
        float o = 0f;
        for (int t = 0; t < len; t++) {
          o = Math.fma(scores[s0 + t], values[t * kvDim + kvOff + d], o);
        }
        out[oh + d] = o;
      }
    }
  }

  @Override
  public void softmax(float[] x, int off, int length) {
    Objects.checkFromIndexSize(off, length, x.length);
    if (length == 0) {
      return;
    }
    float max = Float.NEGATIVE_INFINITY;
    for (int i = 0; i < length; i++) {
      max = Math.max(max, x[off + i]);
    }
    float sum = 0f;
    for (int i = 0; i < length; i++) {
      float e = (float) Math.exp(x[off + i] - max);
      x[off + i] = e;
      sum += e;
    }
    for (int i = 0; i < length; i++) {
      x[off + i] /= sum;
    }
  }

  @Override
  public void siluMul(float[] gate, float[] up, int length) {
    siluMulInPlace(gate, up, length);
  }

  /** SwiGLU's gate in plain loops, with {@link Math#exp}: the reference for {@link SiluMul}. */
  private static void siluMulInPlace(float[] gate, float[] up, int length) {
    Objects.checkFromIndexSize(0, length, gate.length);
    Objects.checkFromIndexSize(0, length, up.length);
    for (int i = 0; i < length; i++) {
      float g = gate[i];
      gate[i] = g / (1f + (float) Math.exp(-g)) * up[i];
    }
  }

  @Override
  public void rope(float[] x, int off, int heads, int headDim, float[] cos, float[] sin) {
    int half = headDim / 2;
    Objects.checkFromIndexSize(off, Math.multiplyExact(heads, headDim), x.length);
    Objects.checkFromIndexSize(0, half, cos.length);
    Objects.checkFromIndexSize(0, half, sin.length);
    for (int h = 0; h < heads; h++) {
      int base = off + h * headDim;
      for (int i = 0; i < half; i++) {
        float x1 = x[base + i];
        float x2 = x[base + i + half];
        x[base + i] = x1 * cos[i] - x2 * sin[i];
        x[base + i + half] = x2 * cos[i] + x1 * sin[i];
      }
    }
  }

  @Override
  public int threads() {
    return 1;
  }
}
