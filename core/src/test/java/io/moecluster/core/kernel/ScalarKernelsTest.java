package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import org.junit.jupiter.api.Test;

/** The oracle itself, against hand-computed values. */
class ScalarKernelsTest {
  private final ScalarKernels k = new ScalarKernels();

  @Test
  void matVecAndMatMulOnASmallMatrix() {
    Matrix w = Matrix.of("w", DType.F32, 2, 3, new float[] {1, 2, 3, -1, 0.5f, 4});
    float[] out = new float[4];
    k.matVec(w, new float[] {9, 1, 1, 2}, 1, out, 2);
    assertEquals(0f, out[0]);
    assertEquals(1 + 2 + 6f, out[2]);
    assertEquals(-1 + 0.5f + 8f, out[3]);
    float[] batch = new float[4];
    k.matMul(w, new float[] {1, 1, 2, 1, 0, 0}, 2, batch);
    assertEquals(9f, batch[0]);
    assertEquals(7.5f, batch[1]);
    assertEquals(1f, batch[2]);
    assertEquals(-1f, batch[3]);
  }

  @Test
  void bf16WeightsAreRoundedToBf16() {
    Matrix w = Matrix.of("w", DType.BF16, 1, 2, new float[] {1.00390625f, 3f}); // 1 + 2^-8 -> 1
    float[] out = new float[1];
    k.matVec(w, new float[] {1, 1}, 0, out, 0);
    assertEquals(4f, out[0]);
  }

  @Test
  void elementWise() {
    float[] x = {0, 1, 2, 3};
    k.softmax(x, 1, 3);
    double e = Math.E;
    double z = 1 + e + e * e;
    assertEquals(0f, x[0]);
    assertEquals(1 / z, x[1], 1e-7);
    assertEquals(e / z, x[2], 1e-7);
    assertEquals(e * e / z, x[3], 1e-7);

    float[] gate = {0, 1, -2};
    k.siluMul(gate, new float[] {5, 2, 1}, 3);
    assertEquals(0f, gate[0]);
    assertEquals(2 / (1 + Math.exp(-1)), gate[1], 1e-6);
    assertEquals(-2 / (1 + Math.exp(2)), gate[2], 1e-6);

    float[] out = new float[2];
    k.rmsNorm(out, 0, new float[] {3, 4}, 0, new float[] {1, 2}, 2, 0f);
    double rms = Math.sqrt((9 + 16) / 2.0);
    assertEquals(3 / rms, out[0], 1e-6);
    assertEquals(8 / rms, out[1], 1e-6);

    // rotate_half with headDim 4: pairs (v0, v2) and (v1, v3), here by 90 degrees (cos 0, sin 1)
    float[] v = {1, 2, 3, 4};
    k.rope(v, 0, 1, 4, new float[] {0, 0}, new float[] {1, 1});
    assertEquals(-3f, v[0]);
    assertEquals(-4f, v[1]);
    assertEquals(1f, v[2]);
    assertEquals(2f, v[3]);

    assertEquals(1 * 4 + 2 * 5 + 3 * 6f, k.dot(new float[] {1, 2, 3}, 0, new float[] {0, 4, 5, 6}, 1, 3));
  }
}
