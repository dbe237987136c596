package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

/**
 * The expert passes of one bench-preset layer on 2 kernel threads: {@code swiGluAll} then
 * {@code matMulAll} (the down projections) for two experts, cycling over 16 BF16 experts
 * (277 MB, so weights come from memory). Loaded once per build by {@link BuildAB}; state is
 * static because each class loader has its own copy.
 */
public final class ExpertPasses {
  private static final int HIDDEN = 1024;
  private static final int FFN = 2816;
  private static final int EXPERTS = 16;
  private static final Matrix[] GATE = new Matrix[EXPERTS];
  private static final Matrix[] UP = new Matrix[EXPERTS];
  private static final Matrix[] DOWN = new Matrix[EXPERTS];
  private static VectorKernels kernels;
  private static int next;

  private ExpertPasses() {}

  public static void init(long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    for (int e = 0; e < EXPERTS; e++) {
      GATE[e] = matrix(rnd, FFN, HIDDEN);
      UP[e] = matrix(rnd, FFN, HIDDEN);
      DOWN[e] = matrix(rnd, HIDDEN, FFN);
    }
    kernels = new VectorKernels(2);
  }

  /** Runs passes for {@code millis}; returns GB/s of weights read (n = 1) or GFLOP/s. */
  public static double run(int n, long millis) {
    float[] x = new float[n * HIDDEN];
    for (int i = 0; i < x.length; i++) {
      x[i] = (i % 7) * 0.1f - 0.3f;
    }
    float[][] hs = {new float[n * FFN], new float[n * FFN]};
    float[][] outs = {new float[n * HIDDEN], new float[n * HIDDEN]};
    long t0 = System.nanoTime();
    int passes = 0;
    while (System.nanoTime() - t0 < millis * 1_000_000L) {
      int e0 = next % EXPERTS;
      int e1 = (next + 5) % EXPERTS;
      next++;
      kernels.swiGluAll(new Matrix[] {GATE[e0], GATE[e1]}, new Matrix[] {UP[e0], UP[e1]},
          new float[][] {x, x}, new int[] {n, n}, hs);
      kernels.matMulAll(new Matrix[] {DOWN[e0], DOWN[e1]}, hs, new int[] {n, n}, outs);
      passes++;
    }
    double seconds = (System.nanoTime() - t0) / 1e9;
    double weights = passes * 2.0 * 3 * HIDDEN * FFN;
    return n == 1 ? weights * 2 / seconds / 1e9 : weights * 2.0 * n / seconds / 1e9;
  }

  /** Random BF16 weights off-heap, as a checkpoint's warm copy holds them. */
  static Matrix matrix(SplittableRandom rnd, int rows, int cols) {
    MemorySegment seg = Arena.global().allocate(2L * rows * cols, 64);
    for (long i = 0; i < (long) rows * cols; i++) {
      // small BF16 values (2^-7 to 2^-5) of either sign, random mantissas
      seg.setAtIndex(ValueLayout.JAVA_SHORT, i, (short) (0x3c00 + rnd.nextInt(0x300) - (rnd.nextBoolean() ? 0 : 0x8000)));
    }
    return new Matrix("w", DType.BF16, rows, cols, seg);
  }
}
