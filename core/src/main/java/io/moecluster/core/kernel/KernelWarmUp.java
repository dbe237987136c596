package io.moecluster.core.kernel;

import io.moecluster.core.tensor.BFloat16;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Runs every path of the kernels (each register tile, the matrix-vector kernels, the parallel
 * passes, the element-wise kernels) on small synthetic weights until C2 has compiled them, so that
 * a node's first requests do not run the Vector API's interpreted fallbacks. Without it an expert
 * node spent its first ~10 s of load with 40% of its samples in those fallbacks (JFR), and every
 * token of that time was slow.
 *
 * <p>The weights live in native memory, like checkpoint views and warm copies: C2 compiles a
 * kernel for the segment class it has seen (see docs/PERFORMANCE.md, "One segment class").
 * The results are discarded; the kernels are deterministic, so nothing later depends on them.
 */
public final class KernelWarmUp {
  private static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfShort I16_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  // 101 rows: the 8-row kernel with a tail (the last tile moved back); 6 rows: the 4-row
  // kernels; 3 rows: the 1-row kernels and tiles. 262 columns: whole vector blocks and a tail, for
  // 16-lane (and narrower) vectors.
  private static final int[] ROWS = {101, 6, 3};
  private static final int MAX_ROWS = 101;
  private static final int COLS = 262;
  private static final int[] BATCHES = {1, 2, 3, 4, 5, 7, 8};

  /** Rounds that C2 needs to compile every path on a loaded 2-core machine (about 150), with room. */
  public static final int DEFAULT_ROUNDS = 400;
  /** A machine too slow for the rounds stops here and serves with what has been compiled. */
  public static final Duration DEFAULT_BUDGET = Duration.ofSeconds(10);

  /** How much warming up was done. */
  public record Result(int rounds, Duration took) {}

  private KernelWarmUp() {}

  /** {@link #run(Kernels, Set, int, Duration)} with the defaults. */
  public static Result run(Kernels kernels, Set<DType> weightDtypes) {
    return run(kernels, weightDtypes, DEFAULT_ROUNDS, DEFAULT_BUDGET);
  }

  /**
   * Runs rounds over every kernel path for the weights of {@code weightDtypes} (a checkpoint's
   * dtypes: F16 weights reach the kernels as F32) until {@code rounds} are done or {@code budget}
   * is spent, whichever comes first.
   */
  public static Result run(Kernels kernels, Set<DType> weightDtypes, int rounds, Duration budget) {
    long start = System.nanoTime();
    long deadline = start + budget.toNanos();
    SplittableRandom random = new SplittableRandom(1);
    int done = 0;
    // Shared, as checkpoint views and warm copies are: one memory session class for C2 too.
    try (Arena arena = Arena.ofShared()) {
      List<DType> dtypes = new ArrayList<>();
      if (weightDtypes.contains(DType.F32) || weightDtypes.contains(DType.F16)) {
        dtypes.add(DType.F32);
      }
      if (weightDtypes.contains(DType.BF16)) {
        dtypes.add(DType.BF16);
      }
      Matrix[] ws = new Matrix[dtypes.size() * ROWS.length];
      Matrix[] ups = new Matrix[ws.length];
      for (int d = 0; d < ws.length; d++) {
        ws[d] = matrix(arena, dtypes.get(d / ROWS.length), ROWS[d % ROWS.length], random);
        ups[d] = matrix(arena, dtypes.get(d / ROWS.length), ROWS[d % ROWS.length], random);
      }
      int maxN = BATCHES[BATCHES.length - 1];
      float[] x = values(random, maxN * COLS);
      float[] out = new float[maxN * MAX_ROWS];
      float[] h = new float[maxN * MAX_ROWS];
      float[] norm = values(random, COLS);
      int headDim = 64;
      float[] cos = values(random, headDim / 2);
      float[] sin = values(random, headDim / 2);
      float[] heads = values(random, 4 * headDim);
      int[] contexts = {1, 37, 130}; // one vector of positions, a tail of single vectors, groups of four
      int maxContext = contexts[contexts.length - 1];
      float[] keys = values(random, Kernels.kvPadded(maxContext) * headDim);
      float[] vals = values(random, maxContext * headDim);
      float[] scores = new float[4 * Kernels.kvPadded(maxContext)];
      float[] attended = new float[4 * headDim];
      while (done < rounds && System.nanoTime() < deadline) {
        for (int d = 0; d < ws.length; d++) {
          Matrix w = ws[d];
          for (int n : BATCHES) {
            kernels.matMul(w, x, n, out);
          }
          kernels.matVec(w, x, 0, out, 0);
          kernels.matMulAll(new Matrix[] {w, w}, new float[][] {x, x}, new int[] {1, 4}, new float[][] {out, h});
          kernels.swiGluAll(new Matrix[] {w, w}, new Matrix[] {ups[d], ups[d]}, new float[][] {x, x},
              new int[] {1, 5}, new float[][] {out, h});
        }
        kernels.rmsNorm(out, 0, x, 0, norm, COLS, 1e-5f);
        kernels.softmax(out, 0, MAX_ROWS);
        kernels.siluMul(h, out, MAX_ROWS);
        kernels.rope(heads, 0, 4, headDim, cos, sin);
        for (int len : contexts) {
          kernels.attendGroup(heads, 0, 4, headDim, keys, vals, headDim, 0, len, 0.125f, scores, attended, 0);
        }
        sink += attended[0];
        done++;
      }
    }
    return new Result(done, Duration.ofNanos(System.nanoTime() - start));
  }

  @SuppressWarnings("unused")
  private static volatile float sink; // a visible use of the results

  private static Matrix matrix(Arena arena, DType dtype, int rows, SplittableRandom random) {
    MemorySegment seg = arena.allocate((long) rows * COLS * dtype.byteSize(), 64);
    for (int i = 0; i < rows * COLS; i++) {
      float v = (float) (random.nextDouble() - 0.5);
      if (dtype == DType.F32) {
        seg.setAtIndex(F32_LE, i, v);
      } else {
        seg.setAtIndex(I16_LE, i, BFloat16.fromFloat(v));
      }
    }
    return new Matrix("warm-up", dtype, rows, COLS, seg);
  }

  private static float[] values(SplittableRandom random, int n) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) (random.nextDouble() - 0.5);
    }
    return v;
  }
}
