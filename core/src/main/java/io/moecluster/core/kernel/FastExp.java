package io.moecluster.core.kernel;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * exp(x) for float lanes, built from operations that IEEE 754 defines exactly (fma, add, multiply,
 * min, max and bit operations). The Vector API's {@code EXP} is an approximation whose bits may
 * differ between the interpreter and C2, and a scalar {@link Math#exp} costs about 4 ns an element;
 * this gives the same bits in every JIT tier, in every lane and in the scalar form.
 *
 * <p>exp(x) is computed as 2^n * p(r) with n = round(x / ln 2), r = x - n ln 2 (two-constant
 * Cody-Waite reduction) and the Cephes {@code expf} polynomial on |r| <= ln 2 / 2: within 2 ulp
 * of the correctly rounded value. x is clamped to [{@link #X_MIN}, 88.8]: above, the result
 * overflows to infinity exactly where {@code (float) Math.exp(x)} does; below, callers that need
 * the tiny values treat them themselves.
 */
final class FastExp {
  private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

  /** The smallest argument computed; exp(-86) is about 4e-38, near the smallest normal float. */
  static final float X_MIN = -86f;
  private static final float X_MAX = 88.8f;
  private static final float LOG2E = 1.44269504088896341f;
  private static final float LN2_HI = 0.693359375f;
  private static final float LN2_LO = -2.12194440e-4f;
  // 1.5 * 2^23: adding it rounds to an integer, which then sits in the low mantissa bits.
  private static final float ROUND = 12582912f;
  private static final int ROUND_BITS = 0x4B400000;
  private static final float P0 = 1.9875691500e-4f;
  private static final float P1 = 1.3981999507e-3f;
  private static final float P2 = 8.3334519073e-3f;
  private static final float P3 = 4.1665795894e-2f;
  private static final float P4 = 1.6666665459e-1f;
  private static final float P5 = 5.0000001201e-1f;

  private static final FloatVector V_NEG_LN2_HI = FloatVector.broadcast(F, -LN2_HI);
  private static final FloatVector V_NEG_LN2_LO = FloatVector.broadcast(F, -LN2_LO);
  private static final FloatVector V_P2 = FloatVector.broadcast(F, P2);
  private static final FloatVector V_P3 = FloatVector.broadcast(F, P3);
  private static final FloatVector V_P4 = FloatVector.broadcast(F, P4);
  private static final FloatVector V_P5 = FloatVector.broadcast(F, P5);

  private FastExp() {}

  /** exp of every lane ({@link FloatVector#SPECIES_PREFERRED}), arguments clamped as above. */
  static FloatVector exp(FloatVector v) {
    FloatVector x = v.max(X_MIN).min(X_MAX);
    FloatVector t = x.fma(LOG2E, ROUND);
    FloatVector n = t.sub(ROUND);
    FloatVector r = n.fma(V_NEG_LN2_HI, x);
    r = n.fma(V_NEG_LN2_LO, r);
    FloatVector p = r.fma(P0, P1);
    p = p.fma(r, V_P2);
    p = p.fma(r, V_P3);
    p = p.fma(r, V_P4);
    p = p.fma(r, V_P5);
    p = p.fma(r.mul(r), r).add(1f);
    // 2^(n-1), times 2 after the product: n reaches 128 just below the float range's top.
    FloatVector half = t.reinterpretAsInts().sub(ROUND_BITS - 126).lanewise(VectorOperators.LSHL, 23)
        .reinterpretAsFloats();
    return p.mul(half).mul(2f);
  }

  /** One value, with the lanes' exact sequence of operations. */
  static float exp(float v) {
    float x = Math.min(Math.max(v, X_MIN), X_MAX);
    float t = Math.fma(x, LOG2E, ROUND);
    float n = t - ROUND;
    float r = Math.fma(n, -LN2_HI, x);
    r = Math.fma(n, -LN2_LO, r);
    float p = Math.fma(r, P0, P1);
    p = Math.fma(p, r, P2);
    p = Math.fma(p, r, P3);
    p = Math.fma(p, r, P4);
    p = Math.fma(p, r, P5);
    p = Math.fma(p, r * r, r) + 1f;
    float half = Float.intBitsToFloat((Float.floatToRawIntBits(t) - (ROUND_BITS - 126)) << 23);
    return p * half * 2f;
  }
}
