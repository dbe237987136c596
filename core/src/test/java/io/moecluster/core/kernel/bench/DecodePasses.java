package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.MemoryBandwidth;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;

/**
 * Decode's kernel with nothing else around it: BF16 {@link VectorKernels#matVec} passes over 48
 * distinct 2816 x 1024 matrices (277 MB, far past the caches, as a decode token's weights are) on
 * T threads, alternated round by round with the loop that measures decode's bound
 * ({@link MemoryBandwidth#measureReadGBps}) on the same threads. The ratio of the two is the most
 * of its bound that decode could reach if a token were nothing but these passes: what is left of
 * decode's gap beyond it lies in the kernel, not in the work between passes.
 * Arguments: rounds, then thread counts.
 */
final class DecodePasses {
  private static final int ROWS = 2816;
  private static final int COLS = 1024;
  private static final int MATRICES = 48;

  private DecodePasses() {}

  public static void main(String[] args) {
    int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 9;
    int[] threadCounts = args.length > 1
        ? Arrays.stream(args, 1, args.length).mapToInt(Integer::parseInt).toArray()
        : new int[] {1, 2};
    long bytes = 2L * ROWS * COLS;
    try (Arena arena = Arena.ofShared()) {
      Matrix[] weights = new Matrix[MATRICES];
      for (int m = 0; m < MATRICES; m++) {
        MemorySegment seg = arena.allocate(bytes, 4096);
        for (long p = 0; p < bytes; p += 2) {
          // small BF16 values (1.0 + a little), so that no sum overflows or turns into NaN
          seg.set(ValueLayout.JAVA_SHORT_UNALIGNED, p, (short) (0x3f80 + ((p + m) & 0x3f)));
        }
        weights[m] = new Matrix("w" + m, DType.BF16, ROWS, COLS, seg);
      }
      MemorySegment buffer = arena.allocate(MemoryBandwidth.DEFAULT_BUFFER_BYTES, 4096);
      buffer.fill((byte) 1);
      float[] x = new float[COLS];
      for (int i = 0; i < COLS; i++) {
        x[i] = (i % 7) * 0.01f;
      }
      float[] out = new float[ROWS];
      for (int threads : threadCounts) {
        try (VectorKernels kernels = new VectorKernels(threads)) {
          for (int i = 0; i < 20 * MATRICES; i++) { // lets C2 compile the kernel and the pool
            kernels.matVec(weights[i % MATRICES], x, 0, out, 0);
          }
          double[] loop = new double[rounds];
          double[] passes = new double[rounds];
          double[] ratios = new double[rounds];
          for (int r = 0; r < rounds; r++) {
            loop[r] = MemoryBandwidth.measureReadGBps(buffer, threads, 3);
            int count = 3 * MATRICES;
            long start = System.nanoTime();
            for (int i = 0; i < count; i++) {
              kernels.matVec(weights[i % MATRICES], x, 0, out, 0);
            }
            passes[r] = (double) bytes * count / (System.nanoTime() - start);
            ratios[r] = passes[r] / loop[r];
          }
          System.out.printf(Locale.ROOT,
              "threads %d: read loop %.1f GB/s, matVec passes %.1f GB/s, passes / loop %.2f (medians of %d rounds; ratios %.2f-%.2f)%n",
              threads, MappedReadBandwidth.median(loop), MappedReadBandwidth.median(passes), MappedReadBandwidth.median(ratios),
              rounds, MappedReadBandwidth.min(ratios), MappedReadBandwidth.max(ratios));
        }
      }
    }
  }
}
