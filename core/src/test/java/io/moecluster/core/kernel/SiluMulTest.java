package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SiluMulTest {
  private static final ScalarKernels ORACLE = new ScalarKernels();

  /** Gates over the whole float range that matters, with the edges of the clamp and the specials. */
  private static float[] gates(int n, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    float[] special = {0f, -0f, 1e-30f, -1e-30f, 85.9f, 86f, 86.1f, -88.3f, -88.5f, -88.72f, -88.73f, -88.8f,
        -88.9f, -100f, 100f, 1000f, -1000f, Float.MAX_VALUE, -Float.MAX_VALUE, Float.POSITIVE_INFINITY,
        Float.NEGATIVE_INFINITY, Float.NaN};
    float[] g = new float[n];
    for (int i = 0; i < n; i++) {
      g[i] = i < special.length ? special[i]
          : i % 3 == 0 ? (float) (rnd.nextDouble() * 200 - 100) : (float) (rnd.nextDouble() * 20 - 10);
    }
    return g;
  }

  @Test
  void everyLaneAndTheTailGiveTheSameBitsAsTheScalarSequence() {
    // Enough calls for C2 to compile apply(), so the compiled lanes are checked, not just the interpreter's.
    float[] warm = gates(1000, 1);
    for (int k = 0; k < 5000; k++) {
      SiluMul.apply(warm.clone(), warm, 0, 1000);
    }
    for (int len : new int[] {1, 7, 16, 17, 63, 1000, 4099}) {
      float[] gate = gates(len, len);
      float[] up = gates(len, len + 1);
      float[] vector = gate.clone();
      SiluMul.apply(vector, up, 0, len);
      for (int i = 0; i < len; i++) {
        float scalar = SiluMul.one(gate[i], up[i]);
        assertEquals(Float.floatToIntBits(scalar), Float.floatToIntBits(vector[i]),
            "element " + i + " of " + len + ": gate " + gate[i] + ", up " + up[i]);
      }
    }
  }

  @Test
  void aRangeGivesTheBitsOfTheWholeArrayAndWritesNothingElse() {
    float[] gate = gates(1000, 3);
    float[] up = gates(1000, 4);
    float[] whole = gate.clone();
    SiluMul.apply(whole, up, 0, 1000);
    float[] pieces = gate.clone();
    SiluMul.apply(pieces, up, 7, 33);
    SiluMul.apply(pieces, up, 33, 1000);
    for (int i = 0; i < 1000; i++) {
      float expected = i < 7 ? gate[i] : whole[i];
      assertEquals(Float.floatToIntBits(expected), Float.floatToIntBits(pieces[i]), "element " + i);
    }
  }

  @Test
  void agreesWithMathExpToAFewUlps() {
    int len = 20_000;
    float[] gate = gates(len, 11);
    float[] up = new float[len];
    java.util.Arrays.fill(up, 1f);
    float[] expected = gate.clone();
    float[] actual = gate.clone();
    ORACLE.siluMul(expected, up, len);
    SiluMul.apply(actual, up, 0, len);
    for (int i = 0; i < len; i++) {
      if (Float.isNaN(expected[i])) {
        assertTrue(Float.isNaN(actual[i]), "gate " + gate[i] + ": NaN expected, got " + actual[i]);
        continue;
      }
      if (Float.isInfinite(expected[i])) {
        assertEquals(expected[i], actual[i], "gate " + gate[i]);
        continue;
      }
      double err = Math.abs((double) expected[i] - actual[i]);
      double allowed = 4 * Math.ulp(expected[i]) + Float.MIN_NORMAL;
      if (!(err <= allowed)) {
        fail("gate " + gate[i] + ": Math.exp gives " + expected[i] + ", SiluMul " + actual[i] + " ("
            + err / Math.ulp(expected[i]) + " ulp)");
      }
    }
  }
}
