package io.moecluster.core.model;

/**
 * Rotary position angles as HF computes them: {@code inv_freq[i] = 1 / theta^(2i / headDim)} in
 * float32, angle = position * inv_freq[i] in float32, then cos and sin.
 */
final class RotaryEmbedding {
  private final float[] invFreq; // [headDim / 2]

  RotaryEmbedding(int headDim, double theta) {
    invFreq = new float[headDim / 2];
    for (int i = 0; i < invFreq.length; i++) {
      invFreq[i] = (float) (1.0 / Math.pow(theta, (2.0 * i) / headDim));
    }
  }

  /** Fills {@code cos} and {@code sin} ({@code [headDim / 2]}) for one position. */
  void angles(int position, float[] cos, float[] sin) {
    for (int i = 0; i < invFreq.length; i++) {
      float angle = position * invFreq[i];
      cos[i] = (float) Math.cos(angle);
      sin[i] = (float) Math.sin(angle);
    }
  }

  int halfDim() {
    return invFreq.length;
  }
}
