package io.moecluster.core.model;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.ScalarKernels;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** Runs the project's forward pass the plain way and compares logits with the reference. */
public final class ForwardHarness {
  private ForwardHarness() {}

  /** Which kernels the project runs on. */
  public enum KernelKind {
    VECTOR_2_THREADS,
    SCALAR;

    public Kernels create() {
      return this == SCALAR ? new ScalarKernels() : KernelsFactory.create(2);
    }
  }

  public static void closeKernels(Kernels kernels) {
    if (kernels instanceof AutoCloseable c) {
      try {
        c.close();
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }
  }

  /** {@code length} token ids in {@code [1, vocab)}, a pure function of the seed. */
  public static int[] prompt(long seed, int length, int vocab) {
    SplittableRandom r = new SplittableRandom(seed);
    int[] ids = new int[length];
    for (int i = 0; i < length; i++) {
      ids[i] = 1 + r.nextInt(vocab - 1);
    }
    return ids;
  }

  /** One prefill step of the whole sequence, asking for logits at every position. */
  public static float[][] prefill(MoeModel model, ForwardPass fp, int[] tokens) {
    KvCache cache = model.newKvCache(tokens.length);
    List<StepRow> rows = new ArrayList<>();
    for (int p = 0; p < tokens.length; p++) {
      rows.add(new StepRow(cache, p, tokens[p], true));
    }
    return fp.step(rows);
  }

  /** The same tokens fed one step at a time through the KV cache. */
  public static float[][] decode(MoeModel model, ForwardPass fp, int[] tokens) {
    KvCache cache = model.newKvCache(1);
    float[][] out = new float[tokens.length][];
    for (int p = 0; p < tokens.length; p++) {
      out[p] = fp.step(List.of(new StepRow(cache, p, tokens[p], true)))[0];
    }
    return out;
  }

  /** Differences between the project's logits and the reference's. */
  public record Comparison(double maxAbsDiff, double maxAbsLogit, int argmaxMismatches, String firstMismatch) {
    public double relative() {
      return maxAbsDiff / maxAbsLogit;
    }

    @Override
    public String toString() {
      return String.format(
          "max|diff| = %.3e, max|logit| = %.3f, relative = %.3e, argmax mismatches = %d%s",
          maxAbsDiff, maxAbsLogit, relative(), argmaxMismatches,
          firstMismatch == null ? "" : " (" + firstMismatch + ")");
    }
  }

  public static Comparison compare(double[][] expected, float[][] actual) {
    double maxDiff = 0;
    double maxAbs = 0;
    int mismatches = 0;
    String first = null;
    if (expected.length != actual.length) {
      fail(actual.length + " rows of logits, expected " + expected.length);
    }
    for (int t = 0; t < expected.length; t++) {
      if (actual[t] == null || actual[t].length != expected[t].length) {
        fail("position " + t + ": logits " + (actual[t] == null ? "missing" : "of length " + actual[t].length));
      }
      for (int i = 0; i < expected[t].length; i++) {
        if (!Float.isFinite(actual[t][i])) {
          fail("position " + t + ", token " + i + ": logit " + actual[t][i]);
        }
        maxDiff = Math.max(maxDiff, Math.abs(expected[t][i] - actual[t][i]));
        maxAbs = Math.max(maxAbs, Math.abs(expected[t][i]));
      }
      int want = NaiveMoeReference.argmax(expected[t]);
      int got = argmax(actual[t]);
      if (want != got) {
        mismatches++;
        if (first == null) {
          double[] sorted = expected[t].clone();
          java.util.Arrays.sort(sorted);
          first =
              "position " + t + ": reference argmax " + want + ", got " + got + "; reference top-2 gap "
                  + (sorted[sorted.length - 1] - sorted[sorted.length - 2]);
        }
      }
    }
    return new Comparison(maxDiff, maxAbs, mismatches, first);
  }

  public static int argmax(float[] v) {
    int best = 0;
    for (int i = 1; i < v.length; i++) {
      if (v[i] > v[best]) {
        best = i;
      }
    }
    return best;
  }

  /** Asserts logits within {@code relTol * max|logit|} and the same argmax at every position. */
  public static Comparison assertClose(String what, double[][] expected, float[][] actual, double relTol) {
    Comparison c = compare(expected, actual);
    System.out.println("[reference] " + what + ": " + c);
    assertTrue(
        c.maxAbsDiff() <= relTol * c.maxAbsLogit(),
        what + ": logits differ from the reference by more than " + relTol + " x max|logit|: " + c);
    assertTrue(c.argmaxMismatches() == 0, what + ": greedy argmax differs from the reference: " + c);
    return c;
  }
}
