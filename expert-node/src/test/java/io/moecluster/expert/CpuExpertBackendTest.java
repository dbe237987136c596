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
import java.util.List;
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

  /**
   * A layer's calls computed together, shared out over two threads, give each expert the bits of
   * its own FFN on one thread: fusing changes no token.
   */
  @Test
  void callsComputedTogetherGiveTheBitsOfEachAlone() {
    Random r = new Random(5);
    int hidden = 67;
    int ffn = 131;
    int m = 4;
    try (VectorKernels two = KernelsFactory.create(2); VectorKernels one = KernelsFactory.create(1)) {
      ExpertWeights[] ws = new ExpertWeights[m];
      float[][] xs = new float[m][];
      int[] rows = {1, 4, 2, 7};
      for (int j = 0; j < m; j++) {
        DType d = j % 2 == 0 ? DType.BF16 : DType.F32;
        ws[j] = new ExpertWeights(Matrix.of("g", d, ffn, hidden, rand(r, ffn * hidden)),
            Matrix.of("u", d, ffn, hidden, rand(r, ffn * hidden)),
            Matrix.of("d", d, hidden, ffn, rand(r, hidden * ffn)));
        xs[j] = rand(r, rows[j] * hidden);
      }
      CpuExpertBackend backend = new CpuExpertBackend(two, one); // as an expert node builds it
      List<CompletableFuture<float[]>> out =
          backend.forwardAll(new int[] {0, 0, 1, 1}, new int[] {0, 1, 0, 1}, ws, xs, rows);
      assertEquals(m, out.size());
      for (int j = 0; j < m; j++) {
        assertTrue(out.get(j).isDone(), "the CPU backend computes on the caller's thread");
        float[] want = ExpertFfn.forward(one, ws[j], xs[j], rows[j]);
        assertArrayEquals(want, out.get(j).join(), "call " + j);
        assertArrayEquals(want, backend.forward(0, j, ws[j], xs[j], rows[j]).join(), "call " + j + " alone");
      }
    }
  }

  @Test
  void aPassThatFailsFailsEachOfItsCalls() {
    try (VectorKernels k = KernelsFactory.create(1)) {
      ExpertWeights w = new ExpertWeights(Matrix.of("g", DType.F32, 4, 4, new float[16]),
          Matrix.of("u", DType.F32, 4, 4, new float[16]), Matrix.of("d", DType.F32, 4, 4, new float[16]));
      List<CompletableFuture<float[]>> out = new CpuExpertBackend(k).forwardAll(new int[] {0, 0},
          new int[] {0, 1}, new ExpertWeights[] {w, w}, new float[][] {new float[4], new float[3]}, new int[] {1, 1});
      assertEquals(2, out.size());
      assertTrue(out.stream().allMatch(CompletableFuture::isCompletedExceptionally), "no call left unanswered");
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
