package io.moecluster.core.model;

import static io.moecluster.core.model.ForwardHarness.closeKernels;
import static io.moecluster.core.model.ForwardHarness.prefill;
import static io.moecluster.core.model.ForwardHarness.prompt;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.ForwardHarness.KernelKind;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Weights copied into memory or read in place: the same logits, and the copies really are copies. */
class WeightPlacementTest {

  @Test
  void parsesTheThreeChoicesInAnyCaseAndNamesThemOnAnythingElse() {
    assertEquals(WeightPlacement.AUTO, WeightPlacement.parse("auto"));
    assertEquals(WeightPlacement.COPY, WeightPlacement.parse(" Copy "));
    assertEquals(WeightPlacement.MAP, WeightPlacement.parse("MAP"));
    for (String bad : new String[] {"", "mmap", "copies"}) {
      var e = assertThrows(IllegalArgumentException.class, () -> WeightPlacement.parse(bad));
      assertEquals("weights must be one of auto, copy, map; got '" + bad + "'", e.getMessage());
    }
    assertThrows(IllegalArgumentException.class, () -> WeightPlacement.parse(null));
  }

  @Test
  void autoCopiesWhatFitsInHalfTheMemoryBesideTheHeap() {
    long gib = 1L << 30;
    assertTrue(WeightPlacement.AUTO.copies(8 * gib, 16 * gib));
    assertFalse(WeightPlacement.AUTO.copies(8 * gib + 1, 16 * gib));
    assertTrue(WeightPlacement.COPY.copies(100 * gib, 16 * gib));
    assertFalse(WeightPlacement.MAP.copies(1, 16 * gib));
    assertTrue(WeightPlacement.memoryForCopies() > 0, "this machine has memory beside the heap");
  }

  @Test
  void copiedAndMappedWeightsGiveBitIdenticalLogits() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.QWEN2_MOE, DType.BF16); // shared expert too
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    try (MoeModel mapped = MoeModel.load(dir, kernels, WeightPlacement.MAP);
        MoeModel copied = MoeModel.load(dir, kernels, WeightPlacement.COPY)) {
      assertFalse(mapped.denseCopied());
      assertFalse(mapped.experts().copies());
      assertEquals(0, mapped.copiedBytes());
      assertTrue(copied.denseCopied());
      assertTrue(copied.experts().copies());
      int[] tokens = prompt(5L, 23, mapped.config().vocabSize());
      float[][] a = prefill(mapped, new ForwardPass(mapped, mapped.experts()), tokens);
      float[][] b = prefill(copied, new ForwardPass(copied, copied.experts()), tokens);
      for (int p = 0; p < tokens.length; p++) {
        assertArrayEquals(a[p], b[p], 0f, "position " + p);
      }
    } finally {
      closeKernels(kernels);
    }
  }

  @Test
  void copiesLieOutsideTheMappingHoldTheSameBytesAndAreFreedOnClose() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.BF16);
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    List<Matrix> copies = new ArrayList<>();
    try (MoeModel mapped = MoeModel.load(dir, kernels, WeightPlacement.MAP);
        MoeModel copied = MoeModel.load(dir, kernels, WeightPlacement.COPY)) {
      List<long[]> mappings = copied.tensors().mappings().stream()
          .map(m -> new long[] {m.address(), m.address() + m.byteSize()}).toList();
      List<Matrix[]> pairs = new ArrayList<>();
      pairs.add(new Matrix[] {mapped.dense().embedTokens(), copied.dense().embedTokens()});
      pairs.add(new Matrix[] {mapped.dense().lmHead(), copied.dense().lmHead()});
      for (int l = 0; l < mapped.config().numLayers(); l++) {
        LayerWeights m = mapped.dense().layers().get(l);
        LayerWeights c = copied.dense().layers().get(l);
        pairs.add(new Matrix[] {m.attention().q(), c.attention().q()});
        pairs.add(new Matrix[] {m.attention().o(), c.attention().o()});
        pairs.add(new Matrix[] {m.router(), c.router()});
      }
      long[] reported = new long[1];
      copied.experts().loadAll(done -> reported[0] = done);
      long expertBytes = 0;
      for (int l = 0; l < mapped.config().numLayers(); l++) {
        for (int e = 0; e < mapped.config().numExperts(); e++) {
          expertBytes += mapped.expertStore().expert(l, e).byteSize();
        }
      }
      assertEquals(expertBytes, reported[0], "loadAll reports every expert's bytes");
      assertEquals(expertBytes, copied.experts().expertBytes());
      assertEquals(copied.dense().matrixBytes() + expertBytes, copied.copiedBytes());
      for (Matrix[] p : pairs) {
        Matrix view = p[0];
        Matrix copy = p[1];
        long at = copy.data().address();
        assertTrue(mappings.stream().noneMatch(r -> at >= r[0] && at < r[1]), copy.name() + " is a copy");
        assertEquals(-1, view.data().mismatch(copy.data()), copy.name() + " holds the checkpoint's bytes");
        assertTrue(copy.data().isReadOnly());
        // One segment class for the kernels: C2 deoptimises a kernel that meets a second one.
        assertSame(view.data().getClass(), copy.data().getClass());
        copies.add(copy);
      }
    } finally {
      closeKernels(kernels);
    }
    MemorySegment freed = copies.getFirst().data();
    assertThrows(IllegalStateException.class, () -> freed.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0),
        "closing the model frees the copies");
  }
}
