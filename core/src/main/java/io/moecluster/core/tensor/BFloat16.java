package io.moecluster.core.tensor;

/** Conversions between float and bfloat16 (the top 16 bits of an IEEE float), round to nearest even. */
public final class BFloat16 {
  private BFloat16() {}

  public static float toFloat(short bits) {
    return Float.intBitsToFloat((bits & 0xFFFF) << 16);
  }

  public static short fromFloat(float value) {
    int bits = Float.floatToRawIntBits(value);
    if (Float.isNaN(value)) {
      return (short) ((bits >>> 16) | 0x40); // keep it a quiet NaN
    }
    int rounding = 0x7FFF + ((bits >>> 16) & 1);
    return (short) ((bits + rounding) >>> 16);
  }

  /** Rounds a float to the nearest bfloat16 value, returned as a float. */
  public static float round(float value) {
    return toFloat(fromFloat(value));
  }
}
