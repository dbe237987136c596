package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link Kernels#attendGroup} against attention written out in doubles over row-major keys, for
 * group sizes, head sizes and context lengths that reach every loop and tail of the vector kernel.
 */
class AttendGroupTest {
  private static final int[] LENGTHS = {1, 2, 15, 16, 17, 63, 64, 65, 130, 300};
  private static final int[] HEAD_DIMS = {8, 40, 64, 72, 128};
  private static final int[] GROUPS = {1, 4};
  private static final float SENTINEL = -12345.678f;

  private static final ScalarKernels SCALAR = new ScalarKernels();
  private static VectorKernels vector;

  @BeforeAll
  static void start() {
    vector = new VectorKernels(1);
  }

  @AfterAll
  static void stop() {
    vector.close();
  }

  /** One KV head's context: keys both row-major (for the reference) and blocked (for the kernels). */
  private record Context(int len, int kvDim, int kvOff, int headDim, float[] rowKeys, float[] blockedKeys,
      float[] values) {

    static Context random(SplittableRandom rnd, int len, int headDim, float scale) {
      int kvHeads = 2;
      int kvDim = kvHeads * headDim;
      int kvOff = headDim; // the second KV head: offsets matter
      float[] rowKeys = uniform(rnd, len * kvDim, scale);
      float[] blocked = new float[Kernels.kvPadded(len) * kvDim];
      // Positions past the context in the last block hold garbage: no lane may leak into a result.
      Arrays.fill(blocked, Float.NaN);
      for (int t = 0; t < len; t++) {
        for (int i = 0; i < kvDim; i++) {
          blocked[Kernels.keyIndex(t, i, kvDim)] = rowKeys[t * kvDim + i];
        }
      }
      return new Context(len, kvDim, kvOff, headDim, rowKeys, blocked, uniform(rnd, len * kvDim, 1f));
    }

    float[] attend(Kernels k, float[] q, int qOff, int group, float scale, int outOff, int outLen) {
      float[] out = new float[outLen];
      Arrays.fill(out, SENTINEL);
      float[] scores = new float[group * Kernels.kvPadded(len)];
      k.attendGroup(q, qOff, group, headDim, blockedKeys, values, kvDim, kvOff, len, scale, scores, out, outOff);
      return out;
    }

    /** Head j's output, in doubles from the row-major keys. */
    double[] reference(float[] q, int qh, float scale) {
      double[] s = new double[len];
      double max = Double.NEGATIVE_INFINITY;
      for (int t = 0; t < len; t++) {
        double dot = 0;
        for (int d = 0; d < headDim; d++) {
          dot += (double) q[qh + d] * rowKeys[t * kvDim + kvOff + d];
        }
        s[t] = dot * scale;
        max = Math.max(max, s[t]);
      }
      double sum = 0;
      for (int t = 0; t < len; t++) {
        s[t] = Math.exp(s[t] - max);
        sum += s[t];
      }
      double[] out = new double[headDim];
      for (int d = 0; d < headDim; d++) {
        for (int t = 0; t < len; t++) {
          out[d] += s[t] / sum * values[t * kvDim + kvOff + d];
        }
      }
      return out;
    }
  }

  private static float[] uniform(SplittableRandom rnd, int n, float scale) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) ((rnd.nextDouble() * 2 - 1) * scale);
    }
    return v;
  }

  @Test
  void matchesAttentionInDoubles() {
    SplittableRandom rnd = new SplittableRandom(21);
    for (int headDim : HEAD_DIMS) {
      for (int group : GROUPS) {
        for (int len : LENGTHS) {
          // Scores spread over several units, so the softmax is far from uniform.
          Context c = Context.random(rnd, len, headDim, 3f);
          int qOff = 5;
          int outOff = 3;
          float[] q = uniform(rnd, qOff + group * headDim + 2, 1f);
          float scale = (float) (1 / Math.sqrt(headDim));
          int outLen = outOff + group * headDim + 4;
          for (Kernels k : new Kernels[] {SCALAR, vector}) {
            float[] out = c.attend(k, q, qOff, group, scale, outOff, outLen);
            String what = k.getClass().getSimpleName() + " headDim " + headDim + " group " + group + " len " + len;
            for (int j = 0; j < group; j++) {
              double[] ref = c.reference(q, qOff + j * headDim, scale);
              for (int d = 0; d < headDim; d++) {
                float got = out[outOff + j * headDim + d];
                // A convex combination of values in [-1, 1]: an absolute tolerance fits.
                assertEquals(ref[d], got, 2e-5, what + " head " + j + " dim " + d);
              }
            }
            for (int i = 0; i < outOff; i++) {
              assertEquals(SENTINEL, out[i], what + ": wrote before its output");
            }
            for (int i = outOff + group * headDim; i < outLen; i++) {
              assertEquals(SENTINEL, out[i], what + ": wrote past its output");
            }
          }
        }
      }
    }
  }

  @Test
  void vectorAndScalarScoresAreTheSameFusedMultiplyAdds() {
    // With one position the softmax is exactly 1 in both, so the output is exactly v_0 in both;
    // with two equal keys it is exactly 1/2: what differs between the two implementations can
    // only be the exp, never the order of the products.
    SplittableRandom rnd = new SplittableRandom(22);
    for (int headDim : HEAD_DIMS) {
      Context c = Context.random(rnd, 1, headDim, 1f);
      float[] q = uniform(rnd, 4 * headDim, 1f);
      float[] v = c.attend(vector, q, 0, 4, 0.5f, 0, 4 * headDim);
      float[] s = c.attend(SCALAR, q, 0, 4, 0.5f, 0, 4 * headDim);
      assertTrue(Arrays.equals(v, s), "headDim " + headDim);
      for (int j = 0; j < 4; j++) {
        for (int d = 0; d < headDim; d++) {
          assertEquals(c.values()[c.kvOff() + d], v[j * headDim + d], "headDim " + headDim);
        }
      }
    }
  }

  @Test
  void aRowsResultDoesNotDependOnWhatFollowsItInTheCache() {
    // Decode reads a block that later positions will fill; a prefill reads it full. Same bits.
    SplittableRandom rnd = new SplittableRandom(23);
    int headDim = 64;
    Context full = Context.random(rnd, 40, headDim, 2f);
    float[] q = uniform(rnd, 4 * headDim, 1f);
    for (int len : new int[] {1, 16, 17, 33}) {
      Context prefix = new Context(len, full.kvDim(), full.kvOff(), headDim, full.rowKeys(), full.blockedKeys().clone(),
          full.values());
      float[] garbage = prefix.blockedKeys();
      for (int t = len; t < Kernels.kvPadded(len); t++) {
        for (int i = 0; i < full.kvDim(); i++) {
          garbage[Kernels.keyIndex(t, i, full.kvDim())] = Float.NaN;
        }
      }
      float[] clean = new Context(len, full.kvDim(), full.kvOff(), headDim, full.rowKeys(), full.blockedKeys(),
          full.values()).attend(vector, q, 0, 4, 0.125f, 0, 4 * headDim);
      float[] dirty = prefix.attend(vector, q, 0, 4, 0.125f, 0, 4 * headDim);
      assertTrue(Arrays.equals(clean, dirty), "len " + len);
      for (float f : dirty) {
        assertTrue(Float.isFinite(f), "len " + len);
      }
    }
  }

  @Test
  void shortArraysAreRefusedBeforeAnyWrite() {
    SplittableRandom rnd = new SplittableRandom(24);
    Context c = Context.random(rnd, 20, 64, 1f); // 2 blocks
    float[] q = uniform(rnd, 4 * 64, 1f);
    for (Kernels k : new Kernels[] {SCALAR, vector}) {
      float[] out = new float[4 * 64];
      Arrays.fill(out, SENTINEL);
      // scores of one block per head where the context needs two
      assertThrows(IndexOutOfBoundsException.class, () -> k.attendGroup(q, 0, 4, 64, c.blockedKeys(), c.values(),
          c.kvDim(), c.kvOff(), 20, 0.125f, new float[4 * Kernels.KV_BLOCK], out, 0));
      // a context longer than the cache holds
      assertThrows(IndexOutOfBoundsException.class, () -> k.attendGroup(q, 0, 4, 64, c.blockedKeys(), c.values(),
          c.kvDim(), c.kvOff(), 33, 0.125f, new float[4 * 48], out, 0));
      // a KV head past the position's end
      assertThrows(IndexOutOfBoundsException.class, () -> k.attendGroup(q, 0, 4, 64, c.blockedKeys(), c.values(),
          c.kvDim(), c.kvDim(), 20, 0.125f, new float[4 * 32], out, 0));
      for (float f : out) {
        assertEquals(SENTINEL, f);
      }
    }
  }
}
