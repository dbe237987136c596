package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

class CpuExpertBackendTest {

  @Test
  void isBitForBitTheFfnOfTheKernels() {
    Random r = new Random(3);
    int hidden = 67;
    int ffn = 131;
    try (VectorKernels k = KernelsFactory.create(2)) {
      for (DType d : new DType[] {DType.F32, DType.BF16}) {
        ExpertWeights w = new ExpertWeights(Matrix.of("g", d, ffn, hidden, rand(r, ffn * hidden)),
            Matrix.of("u", d, ffn, hidden, rand(r, ffn * hidden)), Matrix.of("d", d, hidden, ffn, rand(r, hidden * ffn)));
        for (int rows : new int[] {1, 5}) {
          float[] x = rand(r, rows * hidden);
          CompletableFuture<float[]> f = new CpuExpertBackend(k).forward(0, 0, w, x, rows);
          assertTrue(f.isDone(), "the CPU backend computes on the caller's thread");
          assertArrayEquals(ExpertFfn.forward(k, w, x, rows), f.join());
        }
      }
      assertEquals("cpu", new CpuExpertBackend(k).description());
    }
  }

  @Test
  void badInputFailsTheFutureInsteadOfThrowing() {
    try (VectorKernels k = KernelsFactory.create(1)) {
      ExpertWeights w = new ExpertWeights(Matrix.of("g", DType.F32, 4, 4, new float[16]),
          Matrix.of("u", DType.F32, 4, 4, new float[16]), Matrix.of("d", DType.F32, 4, 4, new float[16]));
      assertTrue(new CpuExpertBackend(k).forward(0, 0, w, new float[3], 1).isCompletedExceptionally());
    }
  }

  private static float[] rand(Random r, int n) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = r.nextFloat() * 2 - 1;
    }
    return v;
  }
}
