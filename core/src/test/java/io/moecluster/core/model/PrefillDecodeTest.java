package io.moecluster.core.model;

import static io.moecluster.core.model.ForwardHarness.closeKernels;
import static io.moecluster.core.model.ForwardHarness.decode;
import static io.moecluster.core.model.ForwardHarness.prefill;
import static io.moecluster.core.model.ForwardHarness.prompt;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.ForwardHarness.KernelKind;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Exactness of the KV cache and of batching: every way of cutting the same tokens into steps must
 * give bit-identical logits. This holds by construction (the kernels are batch invariant: row i of
 * matMul is bit-identical to matVec on that row; each row's attention reads the same cached K/V
 * in the same order whether they were written in this step or an earlier one), so the tests use
 * exact equality, not a tolerance.
 */
class PrefillDecodeTest {

  static Stream<Arguments> cases() {
    return Stream.of(
        Arguments.of(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, KernelKind.SCALAR),
        Arguments.of(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, KernelKind.VECTOR_2_THREADS),
        Arguments.of(Preset.TINY, ModelFamily.MIXTRAL, DType.BF16, KernelKind.VECTOR_2_THREADS),
        Arguments.of(Preset.TINY, ModelFamily.QWEN2_MOE, DType.F32, KernelKind.VECTOR_2_THREADS),
        Arguments.of(Preset.TINY, ModelFamily.QWEN3_MOE, DType.F32, KernelKind.VECTOR_2_THREADS),
        Arguments.of(Preset.TINY, ModelFamily.OLMOE, DType.F32, KernelKind.VECTOR_2_THREADS),
        Arguments.of(Preset.SMALL, ModelFamily.MIXTRAL, DType.F32, KernelKind.VECTOR_2_THREADS));
  }

  @ParameterizedTest(name = "{0} {1} {2} {3}")
  @MethodSource("cases")
  void prefillEqualsTokenByTokenDecode(Preset preset, ModelFamily family, DType dtype, KernelKind kind) {
    Path dir = TestCheckpoints.get(preset, family, dtype);
    Kernels kernels = kind.create();
    try (MoeModel model = MoeModel.load(dir, kernels)) {
      ForwardPass fp = new ForwardPass(model, model.experts());
      int[] tokens = prompt(11L, preset == Preset.TINY ? 67 : 9, model.config().vocabSize()); // odd: row-blocking tails
      float[][] once = prefill(model, fp, tokens);
      float[][] stepwise = decode(model, fp, tokens);
      for (int p = 0; p < tokens.length; p++) {
        assertArrayEquals(stepwise[p], once[p], 0f, "position " + p + ": prefill vs decode");
      }
    } finally {
      closeKernels(kernels);
    }
  }

  /** A prompt in uneven chunks (3, 5, 1, rest) equals one prefill, and chunks ask for no logits. */
  @Test
  void chunkedPrefillEqualsOnePrefill() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    try (MoeModel model = MoeModel.load(dir, kernels)) {
      ForwardPass fp = new ForwardPass(model, model.experts());
      int[] tokens = prompt(12L, 17, model.config().vocabSize());
      float[][] once = prefill(model, fp, tokens);
      KvCache cache = model.newKvCache(2);
      int[] cuts = {0, 3, 8, 9, tokens.length};
      for (int c = 0; c + 1 < cuts.length; c++) {
        List<StepRow> rows = new ArrayList<>();
        for (int p = cuts[c]; p < cuts[c + 1]; p++) {
          rows.add(new StepRow(cache, p, tokens[p], p % 2 == 0));
        }
        float[][] got = fp.step(rows);
        for (int i = 0; i < rows.size(); i++) {
          int p = cuts[c] + i;
          if (p % 2 == 0) {
            assertArrayEquals(once[p], got[i], 0f, "position " + p);
          } else {
            assertNull(got[i], "position " + p + " asked for no logits");
          }
        }
      }
      assertEquals(tokens.length, cache.length());
    } finally {
      closeKernels(kernels);
    }
  }

  /**
   * Several sequences in one step (one prefilling, two decoding, at different lengths) give each
   * sequence exactly the logits it gets alone.
   */
  @Test
  void sequencesInOneStepEqualEachAlone() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.QWEN2_MOE, DType.BF16);
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    try (MoeModel model = MoeModel.load(dir, kernels)) {
      ForwardPass fp = new ForwardPass(model, model.experts());
      int vocab = model.config().vocabSize();
      int[] a = prompt(21L, 9, vocab);
      int[] b = prompt(22L, 4, vocab);
      int[] c = prompt(23L, 13, vocab);
      float[][] aloneA = prefill(model, fp, a);
      float[][] aloneB = prefill(model, fp, b);
      float[][] aloneC = prefill(model, fp, c);

      // b and c have their first tokens cached already; a joins with its whole prompt.
      KvCache ca = model.newKvCache(4);
      KvCache cb = model.newKvCache(4);
      KvCache cc = model.newKvCache(4);
      List<StepRow> warm = new ArrayList<>();
      for (int p = 0; p < b.length - 1; p++) {
        warm.add(new StepRow(cb, p, b[p], false));
      }
      for (int p = 0; p < c.length - 1; p++) {
        warm.add(new StepRow(cc, p, c[p], false));
      }
      fp.step(warm);
      List<StepRow> rows = new ArrayList<>();
      rows.add(new StepRow(cb, b.length - 1, b[b.length - 1], true));
      for (int p = 0; p < a.length; p++) {
        rows.add(new StepRow(ca, p, a[p], true));
      }
      rows.add(new StepRow(cc, c.length - 1, c[c.length - 1], true));
      float[][] got = fp.step(rows);
      assertArrayEquals(aloneB[b.length - 1], got[0], 0f, "sequence b");
      for (int p = 0; p < a.length; p++) {
        assertArrayEquals(aloneA[p], got[1 + p], 0f, "sequence a, position " + p);
      }
      assertArrayEquals(aloneC[c.length - 1], got[got.length - 1], 0f, "sequence c");
    } finally {
      closeKernels(kernels);
    }
  }

  /** A checkpoint in 3 shards + index gives the same logits as the single file. */
  @Test
  void shardedCheckpointEqualsSingleFile() {
    for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
      Path single = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, dtype, 42L, 1);
      Path sharded = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, dtype, 42L, 3);
      Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
      try (MoeModel a = MoeModel.load(single, kernels);
          MoeModel b = MoeModel.load(sharded, kernels)) {
        assertEquals(a.config(), b.config());
        int[] tokens = prompt(31L, 12, a.config().vocabSize());
        float[][] la = prefill(a, new ForwardPass(a, a.experts()), tokens);
        float[][] lb = prefill(b, new ForwardPass(b, b.experts()), tokens);
        for (int p = 0; p < tokens.length; p++) {
          assertArrayEquals(la[p], lb[p], 0f, dtype + " position " + p);
        }
        // And both agree with the reference reading the sharded files.
        ForwardHarness.assertClose(
            "mixtral tiny " + dtype + " 3 shards",
            ForwardPassReferenceTest.referenceLogits(sharded, tokens),
            lb,
            ForwardPassReferenceTest.REL_TOL);
      } finally {
        closeKernels(kernels);
      }
    }
  }
}
