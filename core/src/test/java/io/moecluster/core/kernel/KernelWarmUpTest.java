package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.time.Duration;
import java.util.EnumSet;
import org.junit.jupiter.api.Test;

class KernelWarmUpTest {

  @Test
  void runsTheRoundsItIsGivenOnOneThreadAndOnAPool() {
    for (int threads : new int[] {1, 3}) {
      try (VectorKernels kernels = new VectorKernels(threads)) {
        KernelWarmUp.Result r = KernelWarmUp.run(kernels, EnumSet.of(DType.F32, DType.BF16), 3, Duration.ofMinutes(1));
        assertEquals(3, r.rounds(), threads + " thread(s)");
      }
    }
  }

  @Test
  void stopsAtItsBudget() {
    try (VectorKernels kernels = new VectorKernels(2)) {
      KernelWarmUp.Result r =
          KernelWarmUp.run(kernels, EnumSet.of(DType.BF16), Integer.MAX_VALUE, Duration.ofMillis(300));
      assertTrue(r.rounds() >= 1 && r.rounds() < Integer.MAX_VALUE, r.toString());
      // A round started before the deadline finishes: at most one round (interpreted: ~0.2 s) over.
      assertTrue(r.took().toMillis() < 5_000, r.toString());
    }
  }

  @Test
  void changesNoResultOfTheKernels() {
    float[] values = new float[37 * 70];
    for (int i = 0; i < values.length; i++) {
      values[i] = (float) Math.sin(i * 0.37);
    }
    Matrix w = Matrix.of("w", DType.BF16, 37, 70, values);
    float[] x = new float[3 * 70];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) Math.cos(i * 0.11);
    }
    try (VectorKernels kernels = new VectorKernels(2)) {
      float[] before = new float[3 * 37];
      kernels.matMul(w, x, 3, before);
      KernelWarmUp.run(kernels, EnumSet.of(DType.F16), 5, Duration.ofMinutes(1));
      float[] after = new float[3 * 37];
      kernels.matMul(w, x, 3, after);
      assertArrayEquals(before, after);
    }
  }
}
