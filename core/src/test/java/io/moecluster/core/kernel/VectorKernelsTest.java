package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.util.Arrays;
import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** {@link VectorKernels} against the {@link ScalarKernels} oracle, plus batch invariance. */
class VectorKernelsTest {

  private static final int[] COLS = {1, 3, 15, 17, 63, 64, 65, 257, 1000};
  private static final int[] ROWS = {1, 7, 33, 130};
  /** Relative tolerance of a dot product, scaled by sum |w_c * x_c| (its condition). */
  private static final double REL_TOL = 1e-5;
  private static final float SENTINEL = -12345.678f;

  private static final ScalarKernels ORACLE = new ScalarKernels();
  private static VectorKernels one;
  private static VectorKernels two;
  private static VectorKernels three;

  @BeforeAll
  static void start() {
    one = new VectorKernels(1);
    two = new VectorKernels(2);
    three = new VectorKernels(3);
  }

  @AfterAll
  static void stop() {
    one.close();
    two.close();
    three.close();
  }

  private static float[] random(SplittableRandom rnd, int n) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) (rnd.nextDouble() * 2 - 1);
    }
    return v;
  }

  private static Matrix matrix(SplittableRandom rnd, DType dtype, int rows, int cols) {
    return Matrix.of("w", dtype, rows, cols, random(rnd, rows * cols));
  }

  /** sum_c |w[r, c] * x[c]|: the scale a dot product's rounding error is proportional to. */
  private static double absDot(Matrix w, int r, float[] x, int xOff) {
    double s = 0;
    for (int c = 0; c < w.cols(); c++) {
      s += Math.abs((double) w.get(r, c) * x[xOff + c]);
    }
    return s;
  }

  private static void assertDotClose(float expected, float actual, double scale, String what) {
    double err = Math.abs((double) expected - actual);
    double allowed = REL_TOL * scale + Float.MIN_NORMAL;
    if (!(err <= allowed)) {
      fail(what + ": oracle " + expected + ", vector " + actual + ", |difference| " + err
          + " exceeds " + REL_TOL + " * sum|w*x| (= " + scale + ") = " + allowed);
    }
  }

  private static void assertUntouched(float[] a, int from, int to, String what) {
    for (int i = from; i < to; i++) {
      if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(SENTINEL)) {
        fail(what + ": element " + i + " outside the destination was written: " + a[i]);
      }
    }
  }

  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"F32", "BF16"})
  void matVecMatchesOracle(DType dtype) {
    SplittableRandom rnd = new SplittableRandom(1);
    for (int rows : ROWS) {
      for (int cols : COLS) {
        Matrix w = matrix(rnd, dtype, rows, cols);
        int xOff = 3;
        int outOff = 5;
        float[] x = random(rnd, xOff + cols + 2);
        float[] expected = new float[outOff + rows + 4];
        ORACLE.matVec(w, x, xOff, expected, outOff);
        for (VectorKernels k : new VectorKernels[] {one, three}) {
          float[] out = new float[outOff + rows + 4];
          Arrays.fill(out, SENTINEL);
          k.matVec(w, x, xOff, out, outOff);
          String what = dtype + " matVec " + rows + "x" + cols + " on " + k.threads() + " thread(s)";
          for (int r = 0; r < rows; r++) {
            assertDotClose(expected[outOff + r], out[outOff + r], absDot(w, r, x, xOff), what + " row " + r);
          }
          assertUntouched(out, 0, outOff, what);
          assertUntouched(out, outOff + rows, out.length, what);
        }
      }
    }
  }

  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"F32", "BF16"})
  void matMulMatchesOracle(DType dtype) {
    SplittableRandom rnd = new SplittableRandom(2);
    for (int rows : ROWS) {
      for (int cols : COLS) {
        int n = 5;
        Matrix w = matrix(rnd, dtype, rows, cols);
        float[] x = random(rnd, n * cols);
        float[] expected = new float[n * rows];
        ORACLE.matMul(w, x, n, expected);
        float[] out = new float[n * rows + 3];
        Arrays.fill(out, SENTINEL);
        three.matMul(w, x, n, out);
        String what = dtype + " matMul n=" + n + " " + rows + "x" + cols;
        for (int i = 0; i < n; i++) {
          for (int r = 0; r < rows; r++) {
            int o = i * rows + r;
            assertDotClose(expected[o], out[o], absDot(w, r, x, i * cols), what + " [" + i + ", " + r + "]");
          }
        }
        assertUntouched(out, n * rows, out.length, what);
      }
    }
  }

  /**
   * The batch-invariance rule: row i of matMul is bit-identical to matVec on input row i alone,
   * for every n, and the results do not depend on the thread count. The large shapes cross the
   * parallel threshold and span several L2 row blocks.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"F32", "BF16"})
  void matMulIsBatchInvariant(DType dtype) {
    SplittableRandom rnd = new SplittableRandom(3);
    int[][] shapes = {{33, 65}, {130, 257}, {600, 1000}, {1100, 1031}};
    for (int[] shape : shapes) {
      int rows = shape[0];
      int cols = shape[1];
      Matrix w = matrix(rnd, dtype, rows, cols);
      float[] x = random(rnd, 17 * cols);
      // Reference: matVec per input row, single thread.
      float[] single = new float[17 * rows];
      for (int i = 0; i < 17; i++) {
        one.matVec(w, x, i * cols, single, i * rows);
      }
      for (int n : new int[] {1, 2, 3, 5, 6, 7, 8, 17}) {
        for (VectorKernels k : new VectorKernels[] {one, two, three}) {
          float[] out = new float[n * rows];
          k.matMul(w, x, n, out);
          float[] vec = new float[rows];
          for (int i = 0; i < n; i++) {
            k.matVec(w, x, i * cols, vec, 0);
            for (int row = 0; row < rows; row++) {
              int r = row;
              int o = i * rows + r;
              String where = dtype + " " + rows + "x" + cols + " n=" + n + " threads=" + k.threads()
                  + " [" + i + ", " + r + "]";
              assertEquals(Float.floatToRawIntBits(single[o]), Float.floatToRawIntBits(out[o]),
                  () -> where + ": matMul " + out[o] + " differs from single-thread matVec " + single[o]);
              assertEquals(Float.floatToRawIntBits(single[o]), Float.floatToRawIntBits(vec[r]),
                  () -> where + ": matVec " + vec[r] + " differs from single-thread matVec " + single[o]);
            }
          }
        }
      }
    }
  }

  /**
   * A tile's weight rows lie apart (row j of each of the range's parts), and the rows past the
   * parts are computed by a tile of adjacent rows moved back over rows already done: every row must
   * still carry the bits it gets alone (a 1-row view, the 1-row kernels) in its own place, and
   * nothing outside the output rows may be written. For matVec and for 1-5 input rows: 1-19 rows;
   * 37 and 67 (parts of several rows, and on 2 and 3 threads chunks that start past row 0); an L2
   * block and 2 rows, whose last block of 2 rows joins the one before on one thread; and 1026.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"F32", "BF16"})
  void tailRowsGetTheBitsOfEachRowAlone(DType dtype) {
    SplittableRandom rnd = new SplittableRandom(6);
    int cols = 1000;
    int[] rowCounts = new int[23];
    for (int i = 0; i < 19; i++) {
      rowCounts[i] = i + 1;
    }
    rowCounts[19] = 37;
    rowCounts[20] = 67;
    rowCounts[21] = VectorKernels.blockRows(Integer.MAX_VALUE, (long) cols * dtype.byteSize()) + 2;
    rowCounts[22] = 1026;
    for (int rows : rowCounts) {
      Matrix w = matrix(rnd, dtype, rows, cols);
      long rowBytes = (long) cols * dtype.byteSize();
      float[] x = random(rnd, 5 * cols);
      float[] alone = new float[5 * rows]; // [input row, weight row], each pair on its own
      for (int r = 0; r < rows; r++) {
        Matrix row = new Matrix("row", dtype, 1, cols, w.data().asSlice(r * rowBytes, rowBytes));
        float[] one1 = new float[1];
        for (int i = 0; i < 5; i++) {
          one.matVec(row, x, i * cols, one1, 0);
          alone[i * rows + r] = one1[0];
        }
      }
      for (VectorKernels k : new VectorKernels[] {one, two, three}) {
        String what = dtype + " " + rows + " rows on " + k.threads() + " thread(s)";
        float[] vec = new float[rows + 2];
        Arrays.fill(vec, SENTINEL);
        k.matVec(w, x, 0, vec, 1);
        for (int r = 0; r < rows; r++) {
          assertEquals(Float.floatToRawIntBits(alone[r]), Float.floatToRawIntBits(vec[1 + r]), what + " matVec row " + r);
        }
        assertUntouched(vec, 0, 1, what);
        assertUntouched(vec, rows + 1, rows + 2, what);
        for (int n = 1; n <= 5; n++) {
          float[] out = new float[n * rows + 1];
          Arrays.fill(out, SENTINEL);
          k.matMul(w, x, n, out);
          for (int i = 0; i < n * rows; i++) {
            assertEquals(Float.floatToRawIntBits(alone[i]), Float.floatToRawIntBits(out[i]),
                what + " matMul n=" + n + " [" + i / rows + ", " + i % rows + "]");
          }
          assertUntouched(out, n * rows, out.length, what + " matMul n=" + n);
        }
      }
    }
  }

  /**
   * {@link Kernels#matMulAll} and {@link Kernels#swiGluAll} (one parallel pass over several
   * products) give exactly the bits of the separate calls, whatever the thread count, and match
   * the oracle's composition of matMul and siluMul.
   */
  @ParameterizedTest
  @EnumSource(value = DType.class, names = {"F32", "BF16"})
  void fusedProductsMatchSeparateCalls(DType dtype) {
    SplittableRandom rnd = new SplittableRandom(5);
    int[][] shapes = {{600, 1000}, {130, 1000}, {33, 65}, {1100, 1031}, {7, 1000}};
    int[] ns = {1, 17, 3, 5, 1};
    int m = shapes.length;
    Matrix[] ws = new Matrix[m];
    Matrix[] us = new Matrix[m];
    float[][] xs = new float[m][];
    float[] shared = random(rnd, 17 * 1000);
    for (int j = 0; j < m; j++) {
      ws[j] = matrix(rnd, dtype, shapes[j][0], shapes[j][1]);
      us[j] = matrix(rnd, dtype, shapes[j][0], shapes[j][1]);
      // products 0, 1 and 4 share one input array (as q, k and v do), with different row counts
      xs[j] = shapes[j][1] == 1000 ? shared : random(rnd, ns[j] * shapes[j][1]);
    }
    for (VectorKernels k : new VectorKernels[] {one, two, three}) {
      float[][] outs = new float[m][];
      float[][] hs = new float[m][];
      for (int j = 0; j < m; j++) {
        outs[j] = new float[ns[j] * shapes[j][0]];
        hs[j] = new float[ns[j] * shapes[j][0]];
      }
      k.matMulAll(ws, xs, ns, outs);
      k.swiGluAll(ws, us, xs, ns, hs);
      for (int j = 0; j < m; j++) {
        int rows = shapes[j][0];
        float[] expected = new float[ns[j] * rows];
        one.matMul(ws[j], xs[j], ns[j], expected);
        float[] up = new float[ns[j] * rows];
        one.matMul(us[j], xs[j], ns[j], up);
        float[] h = expected.clone();
        one.siluMul(h, up, h.length);
        String what = dtype + " product " + j + " on " + k.threads() + " thread(s)";
        assertTrue(Arrays.equals(expected, outs[j]), what + ": matMulAll differs from matMul");
        assertTrue(Arrays.equals(h, hs[j]), what + ": swiGluAll differs from matMul, matMul, siluMul");
        float[] oracle = new float[ns[j] * rows];
        ORACLE.swiGluAll(new Matrix[] {ws[j]}, new Matrix[] {us[j]}, new float[][] {xs[j]},
            new int[] {ns[j]}, new float[][] {oracle});
        for (int i = 0; i < oracle.length; i++) {
          // products of two dot products of ~1000 terms: loose, the bit checks above are strict
          double err = Math.abs((double) oracle[i] - hs[j][i]);
          assertTrue(err <= 1e-2 + 1e-3 * Math.abs(oracle[i]),
              what + ": swiGluAll " + hs[j][i] + " vs oracle " + oracle[i] + " at " + i);
        }
      }
    }
  }

  /** forEach runs every task exactly once, on any number of threads. */
  @Test
  void forEachRunsEveryTaskOnce() {
    for (VectorKernels k : new VectorKernels[] {one, two, three}) {
      for (int tasks : new int[] {0, 1, 2, 7, 64, 1000}) {
        java.util.concurrent.atomic.AtomicIntegerArray seen = new java.util.concurrent.atomic.AtomicIntegerArray(Math.max(1, tasks));
        k.forEach(tasks, seen::incrementAndGet);
        for (int i = 0; i < tasks; i++) {
          assertEquals(1, seen.get(i), "task " + i + " of " + tasks + " on " + k.threads() + " thread(s)");
        }
      }
    }
  }

  /** The same call gives the same bits before and after the JIT compiles the kernels. */
  @Test
  void resultsDoNotChangeWithJitTier() {
    SplittableRandom rnd = new SplittableRandom(4);
    for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
      Matrix w = matrix(rnd, dtype, 9, 1000);
      float[] x = random(rnd, 4 * 1000);
      float[] first = new float[4 * 9];
      float firstDot = one.dot(x, 0, x, 1000, 1000);
      one.matMul(w, x, 4, first);
      float[] again = new float[4 * 9];
      for (int it = 0; it < 3000; it++) {
        one.matMul(w, x, 4, again);
        one.matVec(w, x, 0, again, 0);
        assertEquals(Float.floatToRawIntBits(firstDot), Float.floatToRawIntBits(one.dot(x, 0, x, 1000, 1000)));
      }
      one.matMul(w, x, 4, again);
      assertTrue(Arrays.equals(first, again), dtype + ": results changed during JIT warm-up");
    }
  }

  @Test
  void reduceSumsLanesInTheDocumentedOrder() {
    int vl = VectorKernels.VL;
    float[] lanes = new float[vl];
    SplittableRandom rnd = new SplittableRandom(5);
    for (int t = 0; t < 100; t++) {
      for (int i = 0; i < vl; i++) {
        lanes[i] = (float) ((rnd.nextDouble() - 0.5) * Math.pow(10, rnd.nextInt(8)));
      }
      float[] v = lanes.clone();
      for (int step = vl / 2; step >= 1; step /= 2) {
        float[] next = new float[vl];
        for (int i = 0; i < vl; i++) {
          next[i] = v[i] + v[i ^ step];
        }
        v = next;
      }
      float actual = DotTiles.reduce(FloatVector.fromArray(VectorKernels.F, lanes, 0));
      assertEquals(Float.floatToRawIntBits(v[0]), Float.floatToRawIntBits(actual));
    }
  }

  @Test
  void dotMatchesOracle() {
    SplittableRandom rnd = new SplittableRandom(6);
    for (int len : new int[] {0, 1, 3, 15, 16, 17, 63, 64, 65, 257, 1000}) {
      float[] a = random(rnd, len + 7);
      float[] b = random(rnd, len + 9);
      double scale = 0;
      for (int i = 0; i < len; i++) {
        scale += Math.abs((double) a[2 + i] * b[5 + i]);
      }
      assertDotClose(ORACLE.dot(a, 2, b, 5, len), three.dot(a, 2, b, 5, len), scale, "dot length " + len);
    }
  }

  @Test
  void rmsNormMatchesOracle() {
    SplittableRandom rnd = new SplittableRandom(7);
    for (int size : new int[] {1, 3, 15, 17, 64, 65, 257, 1000, 2048}) {
      float[] x = random(rnd, size + 3);
      float[] weight = random(rnd, size);
      float[] expected = new float[size + 8];
      float[] actual = new float[size + 8];
      Arrays.fill(actual, SENTINEL);
      ORACLE.rmsNorm(expected, 4, x, 3, weight, size, 1e-6f);
      three.rmsNorm(actual, 4, x, 3, weight, size, 1e-6f);
      for (int i = 0; i < size; i++) {
        assertRelative(expected[4 + i], actual[4 + i], 1e-5, "rmsNorm size " + size + " element " + i);
      }
      assertUntouched(actual, 0, 4, "rmsNorm");
      assertUntouched(actual, 4 + size, actual.length, "rmsNorm");
      // in place
      float[] inPlace = x.clone();
      three.rmsNorm(inPlace, 3, inPlace, 3, weight, size, 1e-6f);
      for (int i = 0; i < size; i++) {
        assertEquals(Float.floatToRawIntBits(actual[4 + i]), Float.floatToRawIntBits(inPlace[3 + i]));
      }
    }
  }

  @Test
  void softmaxMatchesOracle() {
    SplittableRandom rnd = new SplittableRandom(8);
    for (int len : new int[] {1, 2, 3, 15, 16, 17, 100, 257, 1000, 4097}) {
      float[] x = new float[len + 5];
      Arrays.fill(x, SENTINEL);
      for (int i = 0; i < len; i++) {
        x[2 + i] = (float) (rnd.nextDouble() * 20 - 10);
      }
      float[] expected = x.clone();
      ORACLE.softmax(expected, 2, len);
      double[] exact = exactSoftmax(x, 2, len);
      three.softmax(x, 2, len);
      double total = 0;
      for (int i = 0; i < len; i++) {
        // Both round x - max to float (up to ~1e-6 of a small probability), then exp (the
        // vector's within 2 ulp) and a float sum (the vector's over lanes, no less exact than the
        // oracle's running sum): the vector may be off the exact value by little more than the oracle.
        double oracleErr = Math.abs(expected[2 + i] - exact[i]) / exact[i];
        double vectorErr = Math.abs(x[2 + i] - exact[i]) / exact[i];
        assertTrue(vectorErr <= 2 * oracleErr + 1e-6,
            "softmax length " + len + " element " + i + ": exact " + exact[i] + ", oracle " + expected[2 + i]
                + ", vector " + x[2 + i]);
        total += x[2 + i];
      }
      assertEquals(1.0, total, 1e-5);
      assertUntouched(x, 0, 2, "softmax");
      assertUntouched(x, 2 + len, x.length, "softmax");
    }
  }

  @Test
  void softmaxGivesZeroFarBelowTheMaximum() {
    float[] x = {0f, -50f, -87f, -100f, -1e30f, 0f, -200f, -90f, -86f, -10f, -3f, -120f, -95f, -1f, -2f, -4f, -300f};
    float[] expected = x.clone();
    ORACLE.softmax(expected, 0, x.length);
    three.softmax(x, 0, x.length);
    for (int i = 0; i < x.length; i++) {
      // Below exp(-86) ~ 4e-38 the kernel gives 0 where Math.exp gives a subnormal or 0.
      assertEquals(expected[i], x[i], Math.max(1e-37f, 1e-6f * expected[i]), "element " + i);
      assertTrue(x[i] >= 0f && Float.isFinite(x[i]), "element " + i + " = " + x[i]);
    }
    assertEquals(0f, x[3]);
    assertEquals(0f, x[4]);
  }

  private static double[] exactSoftmax(float[] x, int off, int len) {
    double max = Double.NEGATIVE_INFINITY;
    for (int i = 0; i < len; i++) {
      max = Math.max(max, x[off + i]);
    }
    double[] e = new double[len];
    double sum = 0;
    for (int i = 0; i < len; i++) {
      e[i] = Math.exp(x[off + i] - max);
      sum += e[i];
    }
    for (int i = 0; i < len; i++) {
      e[i] /= sum;
    }
    return e;
  }

  @Test
  void siluMulMatchesOracle() {
    SplittableRandom rnd = new SplittableRandom(9);
    for (int len : new int[] {1, 3, 17, 64, 1000}) {
      float[] gate = new float[len + 3];
      for (int i = 0; i < gate.length; i++) {
        gate[i] = (float) (rnd.nextDouble() * 16 - 8);
      }
      float[] up = random(rnd, len + 3);
      float[] expected = gate.clone();
      float[] actual = gate.clone();
      ORACLE.siluMul(expected, up, len);
      three.siluMul(actual, up, len);
      for (int i = 0; i < len; i++) {
        assertRelative(expected[i], actual[i], 1e-6, "siluMul element " + i);
      }
      for (int i = len; i < gate.length; i++) {
        assertEquals(gate[i], actual[i], "siluMul wrote past length");
      }
    }
  }

  @Test
  void ropeMatchesOracle() {
    SplittableRandom rnd = new SplittableRandom(10);
    for (int headDim : new int[] {2, 6, 32, 34, 64, 128}) {
      int heads = 3;
      float[] x = new float[7 + heads * headDim + 5];
      Arrays.fill(x, SENTINEL);
      for (int i = 0; i < heads * headDim; i++) {
        x[7 + i] = (float) (rnd.nextDouble() * 2 - 1);
      }
      float[] cos = new float[headDim / 2];
      float[] sin = new float[headDim / 2];
      for (int i = 0; i < headDim / 2; i++) {
        double angle = 13 * Math.pow(10000, -2.0 * i / headDim);
        cos[i] = (float) Math.cos(angle);
        sin[i] = (float) Math.sin(angle);
      }
      float[] expected = x.clone();
      ORACLE.rope(expected, 7, heads, headDim, cos, sin);
      three.rope(x, 7, heads, headDim, cos, sin);
      // same products and one subtraction/addition per element: bit-identical to the oracle
      assertTrue(Arrays.equals(expected, x), "rope headDim " + headDim);
      assertUntouched(x, 0, 7, "rope");
      assertUntouched(x, 7 + heads * headDim, x.length, "rope");
    }
  }

  @Test
  void factoryUsesAvailableProcessorsForZeroThreads() {
    try (VectorKernels k = KernelsFactory.create(0)) {
      assertEquals(Runtime.getRuntime().availableProcessors(), k.threads());
    }
    try (VectorKernels k = KernelsFactory.create(2)) {
      assertEquals(2, k.threads());
    }
  }

  @Test
  void closedKernelsStillComputeOnTheCaller() {
    SplittableRandom rnd = new SplittableRandom(11);
    Matrix w = matrix(rnd, DType.F32, 300, 1000);
    float[] x = random(rnd, 1000);
    float[] before = new float[300];
    float[] after = new float[300];
    VectorKernels k = new VectorKernels(2);
    k.matVec(w, x, 0, before, 0);
    k.close();
    k.matVec(w, x, 0, after, 0);
    assertTrue(Arrays.equals(before, after));
  }

  @Test
  void memoryBandwidthSmoke() {
    double gbps = MemoryBandwidth.measureReadGBps(1, 32L << 20, 2);
    // Only sanity: the figure depends on the machine and its load (and on the JIT having run).
    assertTrue(gbps > 0 && Double.isFinite(gbps), "read bandwidth " + gbps + " GB/s");
  }

  private static void assertRelative(float expected, float actual, double rel, String what) {
    double err = Math.abs((double) expected - actual);
    double allowed = rel * Math.abs(expected) + Float.MIN_NORMAL;
    if (!(err <= allowed)) {
      fail(what + ": oracle " + expected + ", vector " + actual + ", relative difference "
          + err / Math.abs(expected) + " exceeds " + rel);
    }
  }
}
