package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.ScalarKernels;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.model.MoeModel;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.expert.CpuExpertBackend;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CUDA backend on a real GPU: every kernel against the CPU on random inputs (odd sizes
 * included), batch invariance, eviction under a tiny device budget, and the same greedy tokens
 * as the CPU end to end. Skipped, with the probe's reason, where no CUDA device is usable.
 */
class CudaBackendGpuTest {
  /**
   * Max abs difference to the CPU's scalar kernels. Both accumulate in F32 over the same (BF16 or
   * F32) weights, in different orders; outputs are O(1) and K is at most a few thousand, so the
   * rounding differences stay near 1e-6; 1e-4 leaves room without hiding a wrong element.
   */
  private static final float TOLERANCE = 1e-4f;

  private static CudaProbe.Device gpu;

  @BeforeAll
  static void needsAGpu() {
    CudaProbe.Result probe = CudaProbe.probe();
    assumeTrue(probe.available(), "no CUDA device, GPU tests skipped: " + probe.problem());
    gpu = probe.devices().get(0);
  }

  private static CudaExpertBackend backend(long budgetBytes, VectorKernels kernels) {
    return new CudaExpertBackend(CudaDevice.open(gpu, 4L << 20), budgetBytes, new CpuExpertBackend(kernels),
        Runnable::run, "gpu-test");
  }

  private static float[] input(Random r, int rows, int hidden) {
    float[] x = new float[rows * hidden];
    for (int i = 0; i < x.length; i++) {
      x[i] = r.nextFloat() * 2 - 1;
    }
    return x;
  }

  @Test
  void everyKernelMatchesTheCpuOnRandomInputsOddSizesIncluded() {
    Random r = new Random(11);
    // {1024, 2816}: the bench preset (down's K = 2816 sums three groups); {1100, 96}: gate/up's
    // K = 1100 sums two groups; odd K: the unaligned paths.
    int[][] shapes = {{64, 128}, {67, 131}, {256, 100}, {1024, 2816}, {33, 7}, {1100, 96}};
    int[] rowCounts = {1, 2, 3, 4, 5, 8, 9, 37, 256};
    try (VectorKernels k = KernelsFactory.create(2); CudaExpertBackend b = backend(1L << 30, k)) {
      int expert = 0;
      for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
        for (int[] shape : shapes) {
          ExpertWeights w = TestExperts.random(dtype, shape[0], shape[1], expert);
          for (int rows : rowCounts) {
            float[] x = input(r, rows, shape[0]);
            float[] want = ExpertFfn.forward(new ScalarKernels(), w, x, rows);
            float[] got = b.forward(0, expert, w, x, rows).join();
            float diff = maxAbsDiff(want, got);
            assertTrue(diff <= TOLERANCE, dtype + " hidden " + shape[0] + " ffn " + shape[1] + " rows " + rows
                + ": max abs difference " + diff);
          }
          assertTrue(b.tier().isResident(0, expert), "ran on the GPU, not the CPU fallback");
          expert++;
        }
      }
    }
  }

  @Test
  void aRowGivesTheSameBitsAloneAndInAnyBatch() {
    Random r = new Random(5);
    try (VectorKernels k = KernelsFactory.create(1); CudaExpertBackend b = backend(1L << 30, k)) {
      for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
        int hidden = 200;
        ExpertWeights w = TestExperts.random(dtype, hidden, 333, 3);
        float[] x = input(r, 300, hidden);
        float[] all = b.forward(1, dtype.ordinal(), w, x, 300).join(); // prefill kernels
        for (int n : new int[] {1, 3, 4, 5, 8, 9, 17}) { // decode (up to 8 rows) and prefill kernels
          for (int start = 0; start + n <= 300; start += 97) {
            float[] part = b.forward(1, dtype.ordinal(), w, Arrays.copyOfRange(x, start * hidden, (start + n) * hidden),
                n).join();
            assertArrayEquals(Arrays.copyOfRange(all, start * hidden, (start + n) * hidden), part,
                dtype + ": rows " + start + ".." + (start + n) + " differ from the same rows in a batch of 300");
          }
        }
      }
    }
  }

  @Test
  void aTinyBudgetEvictsAndStillComputesRightAndAnOversizedExpertRunsOnTheCpu() {
    Random r = new Random(9);
    int hidden = 96;
    int ffn = 160;
    ExpertWeights[] experts = new ExpertWeights[5];
    for (int e = 0; e < experts.length; e++) {
      experts[e] = TestExperts.random(DType.BF16, hidden, ffn, 100 + e);
    }
    long one = DeviceWeightTier.Layout.of(experts[0]).bytes();
    try (VectorKernels k = KernelsFactory.create(1); CudaExpertBackend b = backend(2 * one, k)) {
      for (int round = 0; round < 3; round++) {
        for (int e = 0; e < experts.length; e++) {
          float[] x = input(r, 3, hidden);
          float diff = maxAbsDiff(ExpertFfn.forward(new ScalarKernels(), experts[e], x, 3),
              b.forward(0, e, experts[e], x, 3).join());
          assertTrue(diff <= TOLERANCE, "expert " + e + " round " + round + ": " + diff);
          assertTrue(b.tier().reservedBytes() <= 2 * one);
        }
      }
      assertTrue(b.tier().evictions() >= 10, "evictions: " + b.tier().evictions());
      b.device().onCopy(() -> null); // the queued frees have run
      assertTrue(b.tier().allocatedBytes() <= 2 * one);
    }
    try (VectorKernels k = KernelsFactory.create(1); CudaExpertBackend b = backend(one - 1, k)) {
      float[] x = input(r, 2, hidden);
      assertArrayEquals(ExpertFfn.forward(k, experts[0], x, 2), b.forward(0, 0, experts[0], x, 2).join(),
          "too large for the budget: the CPU backend, bit for bit");
      assertFalse(b.tier().isResident(0, 0));
    }
  }

  @Test
  void sameGreedyTokensAsTheCpuOnTheSmallPreset(@TempDir Path dir) {
    CheckpointWriter.write(CheckpointSpec.of(Preset.SMALL, DType.BF16, 17), dir);
    List<int[]> prompts = List.of(new int[] {1, 17, 33, 250, 9}, new int[] {5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
    int[][] cpu = new int[prompts.size()][];
    try (LocalGenerator g = LocalGenerator.open(dir, 2)) {
      for (int i = 0; i < prompts.size(); i++) {
        cpu[i] = g.generate(request(prompts.get(i)), ev -> {}).generatedIds();
      }
    }
    VectorKernels k = KernelsFactory.create(2);
    MoeModel model = MoeModel.load(dir, k);
    CudaExpertBackend b = backend(1L << 30, k);
    // Uploads by DMA straight from the registered checkpoint (moe.expert.cuda.register-checkpoint).
    b.registerHostMemory(model.tensors().mappings());
    ExpertStore store = model.expertStore();
    ExpertExecutor onGpu = new ExpertExecutor() {
      @Override
      public List<float[]> run(int layer, List<ExpertTask> tasks) {
        return tasks.stream()
            .map(t -> b.forward(layer, t.expert(), store.expert(layer, t.expert()), t.input(), t.rows()))
            .toList().stream().map(f -> f.join()).toList();
      }

      @Override
      public void close() {
        b.close();
      }
    };
    try (LocalGenerator g = new LocalGenerator(model, Tokenizer.load(dir), onGpu, true)) {
      for (int i = 0; i < prompts.size(); i++) {
        assertArrayEquals(cpu[i], g.generate(request(prompts.get(i)), ev -> {}).generatedIds(), "prompt " + i);
      }
    } finally {
      onGpu.close();
    }
    assertEquals(0, b.tier().reservedBytes());
    assertTrue(b.device().directUploads() > 0, "experts uploaded from the registered mapping by DMA");
  }

  private static GenerationRequest request(int[] prompt) {
    return new GenerationRequest(prompt, SamplingParams.GREEDY, 24, List.of(), true);
  }

  private static float maxAbsDiff(float[] a, float[] b) {
    assertEquals(a.length, b.length);
    float max = 0;
    for (int i = 0; i < a.length; i++) {
      max = Math.max(max, Math.abs(a[i] - b[i]));
    }
    return max;
  }
}
