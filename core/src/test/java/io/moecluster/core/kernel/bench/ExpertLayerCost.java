package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.Matrix;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * What one concurrency-16 layer's experts cost without the cluster: the 8 experts of a small-preset
 * layer (hidden 512, ffn 1408, BF16), 4 rows each, cycling over 4 layers (138 MB, so the weights
 * come from memory), computed three ways. {@code fused}: one {@code swiGluAll} and one
 * {@code matMulAll} over all 8 on 2 kernel threads, as {@code LocalExperts} does, and as an expert
 * node computes a layer's calls since 2026-11-25. {@code calls-P}: each expert a call of its own on
 * one thread of a pool of P, as expert nodes computed their calls before.
 * {@code nodes-K}: two "nodes" side by side, each computing its 4 experts in one pass on K kernel
 * threads of its own. {@code one-K}: a concurrency-1 node's call, one expert of one row, on K
 * kernel threads (cycling over all 32 experts). Prints the median milliseconds per layer (per
 * call for {@code one-K}) of each mode.
 */
final class ExpertLayerCost {
  private static final int HIDDEN = 512;
  private static final int FFN = 1408;
  private static final int LAYERS = 4;
  private static final int EXPERTS = 8;
  private static final int ROWS = 4;
  private static final long MILLIS = 1000;

  private final Matrix[][] gate = new Matrix[LAYERS][EXPERTS];
  private final Matrix[][] up = new Matrix[LAYERS][EXPERTS];
  private final Matrix[][] down = new Matrix[LAYERS][EXPERTS];
  private final float[] x = new float[ROWS * HIDDEN];

  private ExpertLayerCost() {
    SplittableRandom rnd = new SplittableRandom(1);
    for (int l = 0; l < LAYERS; l++) {
      for (int e = 0; e < EXPERTS; e++) {
        gate[l][e] = ExpertPasses.matrix(rnd, FFN, HIDDEN);
        up[l][e] = ExpertPasses.matrix(rnd, FFN, HIDDEN);
        down[l][e] = ExpertPasses.matrix(rnd, HIDDEN, FFN);
      }
    }
    for (int i = 0; i < x.length; i++) {
      x[i] = (i % 7) * 0.1f - 0.3f;
    }
  }

  static void main(String[] args) throws Exception {
    int rounds = 0;
    try {
      rounds = Integer.parseInt(args[0]);
    } catch (RuntimeException e) {
      // usage below
    }
    List<String> modes = args.length > 1 ? Arrays.asList(args).subList(1, args.length) : List.of("fused");
    if (rounds < 1
        || !modes.stream().allMatch(m -> m.equals("fused") || m.matches("(calls|nodes|one)-[1-9][0-9]?"))) {
      System.err.println("usage: expert-layer ROUNDS>=1 [fused|calls-P|nodes-K|one-K ...]");
      System.exit(2);
    }
    ExpertLayerCost cost = new ExpertLayerCost();
    for (String mode : modes) {
      double[] ms = new double[rounds];
      for (int r = -1; r < rounds; r++) { // round -1: C2 compiles the tiles
        double m = cost.time(mode);
        if (r >= 0) {
          ms[r] = m;
        }
      }
      Arrays.sort(ms);
      if (mode.startsWith("one")) {
        System.out.printf(Locale.ROOT, "%s: %.3f ms per call of one expert x 1 row (median of %d rounds)%n",
            mode, ms[rounds / 2], rounds);
      } else {
        System.out.printf(Locale.ROOT, "%s: %.3f ms per layer of %d experts x %d rows (median of %d rounds)%n",
            mode, ms[rounds / 2], EXPERTS, ROWS, rounds);
      }
    }
  }

  /** Milliseconds per layer in {@code mode}, over {@link #MILLIS} of layers. */
  private double time(String mode) throws Exception {
    int n = mode.equals("fused") ? 2 : Integer.parseInt(mode.substring(mode.indexOf('-') + 1));
    if (mode.startsWith("one")) {
      return timeOne(n);
    }
    boolean calls = mode.startsWith("calls");
    // fused: one set of kernels on 2 threads; calls: one single-thread set, which holds no state
    // and so serves every pool thread at once, as on an expert node; nodes: a set of K per node
    VectorKernels[] kernels = new VectorKernels[mode.startsWith("nodes") ? 2 : 1];
    ExecutorService pool = Executors.newFixedThreadPool(calls ? n : 2);
    try {
      for (int i = 0; i < kernels.length; i++) {
        kernels[i] = new VectorKernels(mode.equals("fused") ? 2 : calls ? 1 : n);
      }
      long t0 = System.nanoTime();
      int layers = 0;
      while (System.nanoTime() - t0 < MILLIS * 1_000_000L) {
        int l = layers % LAYERS;
        if (mode.equals("fused")) {
          compute(kernels[0], l, 0, EXPERTS);
        } else {
          List<Future<?>> parts = new ArrayList<>();
          int groups = calls ? EXPERTS : 2;
          int size = EXPERTS / groups;
          for (int g = 0; g < groups; g++) {
            int first = g * size;
            VectorKernels k = kernels[calls ? 0 : g];
            parts.add(pool.submit(() -> compute(k, l, first, size)));
          }
          for (Future<?> f : parts) {
            f.get();
          }
        }
        layers++;
      }
      return (System.nanoTime() - t0) / 1e6 / layers;
    } finally {
      pool.shutdown();
      for (VectorKernels k : kernels) {
        if (k != null) {
          k.close();
        }
      }
    }
  }

  /** Milliseconds per call of one expert over one row on {@code threads} kernel threads. */
  private double timeOne(int threads) {
    float[] row = Arrays.copyOf(x, HIDDEN);
    float[] h = new float[FFN];
    float[] out = new float[HIDDEN];
    try (VectorKernels k = new VectorKernels(threads)) {
      long t0 = System.nanoTime();
      int calls = 0;
      while (System.nanoTime() - t0 < MILLIS * 1_000_000L) {
        int l = calls % LAYERS;
        int e = (calls / LAYERS) % EXPERTS;
        k.swiGluAll(new Matrix[] {gate[l][e]}, new Matrix[] {up[l][e]}, new float[][] {row}, new int[] {1},
            new float[][] {h});
        k.matMulAll(new Matrix[] {down[l][e]}, new float[][] {h}, new int[] {1}, new float[][] {out});
        calls++;
      }
      return (System.nanoTime() - t0) / 1e6 / calls;
    }
  }

  /** Experts {@code first .. first + count - 1} of layer {@code l} in one pass of {@code k}. */
  private void compute(VectorKernels k, int l, int first, int count) {
    Matrix[] g = Arrays.copyOfRange(gate[l], first, first + count);
    Matrix[] u = Arrays.copyOfRange(up[l], first, first + count);
    Matrix[] d = Arrays.copyOfRange(down[l], first, first + count);
    float[][] xs = new float[count][];
    float[][] hs = new float[count][];
    float[][] outs = new float[count][];
    int[] ns = new int[count];
    for (int i = 0; i < count; i++) {
      xs[i] = x;
      hs[i] = new float[ROWS * FFN];
      outs[i] = new float[ROWS * HIDDEN];
      ns[i] = ROWS;
    }
    k.swiGluAll(g, u, xs, ns, hs);
    k.matMulAll(d, hs, ns, outs);
    k.rest();
  }
}
