package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.Matrix;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * What one expert's FFN costs on one kernel thread as the rows routed to it grow, with weights
 * from memory: the question behind the cluster's concurrency-16 throughput, where every expert of
 * a layer gets a few rows (16 sequences x top-2 over 8 experts: 4 on average) and each node
 * computes each expert on one thread. Cycles over 32 BF16 experts of the small preset
 * (hidden 512, ffn 1408: 138 MB, far more than L2) and prints, per row count, the median of
 * {@code rounds} timings of {@code millis} each. Arguments: rounds, millis, row counts.
 */
final class ExpertRows {
  private static final int HIDDEN = 512;
  private static final int FFN = 1408;
  private static final int EXPERTS = 32;

  private ExpertRows() {}

  static void main(String[] args) {
    int rounds;
    long millis;
    int[] ns;
    try {
      rounds = args.length > 0 ? Integer.parseInt(args[0]) : 5;
      millis = args.length > 1 ? Long.parseLong(args[1]) : 400;
      ns = args.length > 2
          ? Arrays.stream(args, 2, args.length).mapToInt(Integer::parseInt).toArray()
          : new int[] {1, 2, 3, 4, 5, 6, 8, 16};
    } catch (NumberFormatException e) {
      rounds = 0;
      millis = 0;
      ns = new int[0];
    }
    if (rounds < 1 || millis < 1 || Arrays.stream(ns).anyMatch(n -> n < 1 || n > 4096)) {
      System.err.println("usage: expert-rows [ROUNDS >= 1] [MILLIS >= 1] [ROWS 1..4096 ...]");
      System.exit(2);
    }
    SplittableRandom rnd = new SplittableRandom(1);
    Matrix[] gate = new Matrix[EXPERTS];
    Matrix[] up = new Matrix[EXPERTS];
    Matrix[] down = new Matrix[EXPERTS];
    for (int e = 0; e < EXPERTS; e++) {
      gate[e] = ExpertPasses.matrix(rnd, FFN, HIDDEN);
      up[e] = ExpertPasses.matrix(rnd, FFN, HIDDEN);
      down[e] = ExpertPasses.matrix(rnd, HIDDEN, FFN);
    }
    double[][] ms = new double[ns.length][rounds];
    try (VectorKernels kernels = new VectorKernels(1)) {
      for (int n : ns) {
        time(kernels, gate, up, down, n, 2 * millis); // warm-up: C2 compiles the tiles of this n
      }
      for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < ns.length; i++) {
          ms[i][r] = time(kernels, gate, up, down, ns[i], millis);
        }
      }
    }
    System.out.printf(Locale.ROOT, "expert FFN %dx%d BF16 on 1 thread, weights from memory (%d experts), "
        + "median of %d rounds:%n", HIDDEN, FFN, EXPERTS, rounds);
    for (int i = 0; i < ns.length; i++) {
      double[] sorted = ms[i].clone();
      Arrays.sort(sorted);
      double median = sorted[rounds / 2];
      System.out.printf(Locale.ROOT, "rows %3d: %.3f ms per expert, %.3f ms per row, %.1f GB/s of weights%n",
          ns[i], median, median / ns[i], 3.0 * HIDDEN * FFN * 2 / (median / 1e3) / 1e9);
    }
  }

  /** Milliseconds per expert FFN of {@code n} rows, over {@code millis} of passes. */
  private static double time(VectorKernels kernels, Matrix[] gate, Matrix[] up, Matrix[] down, int n, long millis) {
    float[] x = new float[n * HIDDEN];
    for (int i = 0; i < x.length; i++) {
      x[i] = (i % 7) * 0.1f - 0.3f;
    }
    float[][] hs = {new float[n * FFN]};
    float[][] outs = {new float[n * HIDDEN]};
    long t0 = System.nanoTime();
    int passes = 0;
    while (System.nanoTime() - t0 < millis * 1_000_000L) {
      int e = passes % EXPERTS;
      kernels.swiGluAll(new Matrix[] {gate[e]}, new Matrix[] {up[e]}, new float[][] {x}, new int[] {n}, hs);
      kernels.matMulAll(new Matrix[] {down[e]}, hs, new int[] {n}, outs);
      passes++;
    }
    return (System.nanoTime() - t0) / 1e6 / passes;
  }
}
