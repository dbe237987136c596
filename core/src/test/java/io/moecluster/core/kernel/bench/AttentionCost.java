package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.kernel.VectorKernels;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * What one row's attention costs on one thread as its context grows: {@link Kernels#attendGroup}
 * over a cache's blocked keys, against the per-position kernel it replaced (a dot product per
 * position and head, with its lane reduction, then a scalar-exp softmax and an axpy per position,
 * written out below as it was), alternating in one JVM. Shapes of the small and bench presets:
 * head size 64, four query heads per KV head. Prints the median of {@code rounds} timings of
 * {@code millis} each, per context length, for one KV head group.
 */
final class AttentionCost {
  private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  private static final int HEAD_DIM = 64;
  private static final int GROUP = 4;

  private AttentionCost() {}

  static void main(String[] args) {
    int rounds;
    long millis;
    int[] lengths;
    try {
      rounds = args.length > 0 ? Integer.parseInt(args[0]) : 5;
      millis = args.length > 1 ? Long.parseLong(args[1]) : 300;
      lengths = args.length > 2
          ? Arrays.stream(args, 2, args.length).mapToInt(Integer::parseInt).toArray()
          : new int[] {16, 64, 256, 1024, 4096};
    } catch (NumberFormatException e) {
      rounds = 0;
      millis = 0;
      lengths = new int[0];
    }
    if (rounds < 1 || millis < 1 || Arrays.stream(lengths).anyMatch(n -> n < 1 || n > 1 << 16)) {
      System.err.println("usage: attention [ROUNDS >= 1] [MILLIS >= 1] [CONTEXT 1..65536 ...]");
      System.exit(2);
    }
    double[][] blocked = new double[lengths.length][rounds];
    double[][] perPosition = new double[lengths.length][rounds];
    try (VectorKernels kernels = new VectorKernels(1)) {
      for (int r = -1; r < rounds; r++) { // round -1 warms up: C2 compiles both
        for (int i = 0; i < lengths.length; i++) {
          Case c = new Case(lengths[i], new SplittableRandom(i));
          double b = c.time(() -> c.blocked(kernels), r < 0 ? 2 * millis : millis);
          double p = c.time(() -> c.perPosition(kernels), r < 0 ? 2 * millis : millis);
          if (r >= 0) {
            blocked[i][r] = b;
            perPosition[i][r] = p;
          }
        }
      }
    }
    System.out.printf(Locale.ROOT, "attention of one row, %d query heads sharing a KV head, head size %d, "
        + "1 thread, median of %d rounds:%n", GROUP, HEAD_DIM, rounds);
    for (int i = 0; i < lengths.length; i++) {
      double b = median(blocked[i]);
      double p = median(perPosition[i]);
      System.out.printf(Locale.ROOT, "context %5d: blocked %8.2f us, per position %8.2f us, ratio %.2f%n",
          lengths[i], b, p, p / b);
    }
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s[s.length / 2];
  }

  /** One group's query heads and a KV head's context, in both key layouts. */
  private static final class Case {
    final int len;
    final float[] q = new float[GROUP * HEAD_DIM];
    final float[] blockedKeys;
    final float[] rowKeys;
    final float[] values;
    final float[] scores;
    final float[] out = new float[GROUP * HEAD_DIM];
    final float scale = (float) (1 / Math.sqrt(HEAD_DIM));
    float sink;

    Case(int len, SplittableRandom rnd) {
      this.len = len;
      fill(q, rnd);
      rowKeys = new float[len * HEAD_DIM];
      fill(rowKeys, rnd);
      values = new float[len * HEAD_DIM];
      fill(values, rnd);
      blockedKeys = new float[Kernels.kvPadded(len) * HEAD_DIM];
      for (int t = 0; t < len; t++) {
        for (int d = 0; d < HEAD_DIM; d++) {
          blockedKeys[Kernels.keyIndex(t, d, HEAD_DIM)] = rowKeys[t * HEAD_DIM + d];
        }
      }
      scores = new float[GROUP * Kernels.kvPadded(len)];
    }

    private static void fill(float[] v, SplittableRandom rnd) {
      for (int i = 0; i < v.length; i++) {
        v[i] = (float) (rnd.nextDouble() - 0.5);
      }
    }

    void blocked(Kernels kernels) {
      kernels.attendGroup(q, 0, GROUP, HEAD_DIM, blockedKeys, values, HEAD_DIM, 0, len, scale, scores, out, 0);
      sink += out[0];
    }

    /** The kernel before blocked keys: per head, a dot product and an axpy per position. */
    void perPosition(VectorKernels kernels) {
      for (int j = 0; j < GROUP; j++) {
        int qh = j * HEAD_DIM;
        for (int t = 0; t < len; t++) {
          scores[t] = kernels.dot(q, qh, rowKeys, t * HEAD_DIM, HEAD_DIM) * scale;
        }
        float max = Float.NEGATIVE_INFINITY;
        for (int t = 0; t < len; t++) {
          max = Math.max(max, scores[t]);
        }
        float sum = 0f;
        for (int t = 0; t < len; t++) {
          float e = (float) Math.exp(scores[t] - max);
          scores[t] = e;
          sum += e;
        }
        for (int t = 0; t < len; t++) {
          scores[t] /= sum;
        }
        Arrays.fill(out, qh, qh + HEAD_DIM, 0f);
        for (int t = 0; t < len; t++) {
          FloatVector a = FloatVector.broadcast(F, scores[t]);
          for (int d = 0; d < HEAD_DIM; d += F.length()) {
            FloatVector.fromArray(F, values, t * HEAD_DIM + d).fma(a, FloatVector.fromArray(F, out, qh + d))
                .intoArray(out, qh + d);
          }
        }
      }
      sink += out[0];
    }

    /** Microseconds per call over about {@code millis}. */
    double time(Runnable call, long millis) {
      long deadline = System.nanoTime() + millis * 1_000_000;
      long calls = 0;
      long start = System.nanoTime();
      long now;
      do {
        for (int i = 0; i < 16; i++) {
          call.run();
        }
        calls += 16;
        now = System.nanoTime();
      } while (now < deadline);
      return (now - start) / 1e3 / calls;
    }
  }
}
