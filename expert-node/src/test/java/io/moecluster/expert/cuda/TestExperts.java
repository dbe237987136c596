package io.moecluster.expert.cuda;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.util.Random;

/** Random expert weights in memory, for the backend tests. */
final class TestExperts {
  private TestExperts() {}

  /** gate, up: [ffn, hidden]; down: [hidden, ffn]; values in [-scale, scale). */
  static ExpertWeights random(DType dtype, int hidden, int ffn, long seed) {
    Random r = new Random(seed);
    float scale = (float) (1 / Math.sqrt(hidden));
    return new ExpertWeights(
        Matrix.of("gate", dtype, ffn, hidden, values(r, ffn * hidden, scale)),
        Matrix.of("up", dtype, ffn, hidden, values(r, ffn * hidden, scale)),
        Matrix.of("down", dtype, hidden, ffn, values(r, hidden * ffn, (float) (1 / Math.sqrt(ffn)))));
  }

  static float[] values(Random r, int n, float scale) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (r.nextFloat() * 2 - 1) * scale;
    }
    return v;
  }
}
