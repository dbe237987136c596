package io.moecluster.core.model;

import static io.moecluster.core.model.ForwardHarness.closeKernels;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.model.ForwardHarness.KernelKind;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Broken checkpoints and bad inputs fail with a message that names the culprit. */
class CheckpointErrorsTest {
  private static final String L0 = "model.layers.0.";
  private static final String L1 = "model.layers.1.";

  private static Path tiny() {
    return TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
  }

  /**
   * Loads the model and runs {@code tokens} through it; the failure may come from {@link
   * MoeModel#load} (dense weights are checked there) or from the first use (experts are mapped
   * lazily).
   */
  private static void loadAndRun(Path dir, int[] tokens) {
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    try (MoeModel model = MoeModel.load(dir, kernels)) {
      ForwardPass fp = new ForwardPass(model, model.experts());
      ForwardHarness.prefill(model, fp, tokens);
    } finally {
      closeKernels(kernels);
    }
  }

  private static void assertFailsNaming(Path dir, int[] tokens, String tensor) {
    RuntimeException e = assertThrows(RuntimeException.class, () -> loadAndRun(dir, tokens));
    System.out.println("[reference] " + tensor + ": " + e);
    assertTrue(
        String.valueOf(e.getMessage()).contains(tensor),
        "the error should name " + tensor + " but says: " + e);
  }

  /** The token, and the expert that layer 1 routes it to when it is the whole sequence. */
  private record Routed(int token, int expert) {}

  private static Routed routedInLayer1() {
    try (NaiveMoeReference ref = NaiveMoeReference.load(tiny())) {
      int token = 5;
      ref.logits(new int[] {token});
      return new Routed(token, ref.lastRouting()[1][0][0]);
    }
  }

  @Test
  void missingExpertTensorIsNamed(@TempDir Path tmp) {
    Routed r = routedInLayer1();
    String name = L1 + "block_sparse_moe.experts." + r.expert() + ".w2.weight";
    Path dir = TestCheckpoints.copyWithTensors(tiny(), tmp.resolve("ckpt"), ts -> ts.removeIf(t -> t.name().equals(name)));
    assertFailsNaming(dir, new int[] {r.token()}, name);
  }

  @Test
  void transposedExpertTensorIsNamed(@TempDir Path tmp) {
    Routed r = routedInLayer1();
    String name = L1 + "block_sparse_moe.experts." + r.expert() + ".w2.weight"; // [hidden, ffn]
    Path dir =
        TestCheckpoints.copyWithTensors(
            tiny(), tmp.resolve("ckpt"), ts -> ts.replaceAll(t -> t.name().equals(name) ? t.reshaped(t.shape()[1], t.shape()[0]) : t));
    assertFailsNaming(dir, new int[] {r.token()}, name);
  }

  @Test
  void expertWithWrongWidthIsNamed(@TempDir Path tmp) {
    Routed r = routedInLayer1();
    String name = L1 + "block_sparse_moe.experts." + r.expert() + ".w3.weight"; // [ffn, hidden]
    Path dir =
        TestCheckpoints.copyWithTensors(
            tiny(), tmp.resolve("ckpt"), ts -> ts.replaceAll(t -> t.name().equals(name) ? t.reshaped(t.shape()[0] + 8, t.shape()[1]) : t));
    assertFailsNaming(dir, new int[] {r.token()}, name);
  }

  @Test
  void transposedAttentionTensorFailsLoad(@TempDir Path tmp) {
    String name = L1 + "self_attn.k_proj.weight"; // [kvDim = 32, hidden = 64]
    Path dir =
        TestCheckpoints.copyWithTensors(
            tiny(), tmp.resolve("ckpt"), ts -> ts.replaceAll(t -> t.name().equals(name) ? t.reshaped(t.shape()[1], t.shape()[0]) : t));
    assertLoadFailsNaming(dir, name);
  }

  @Test
  void wrongNormLengthFailsLoad(@TempDir Path tmp) {
    String name = L0 + "post_attention_layernorm.weight";
    Path dir =
        TestCheckpoints.copyWithTensors(
            tiny(), tmp.resolve("ckpt"), ts -> ts.replaceAll(t -> t.name().equals(name) ? t.reshaped(t.shape()[0] + 1) : t));
    assertLoadFailsNaming(dir, name);
  }

  @Test
  void missingRouterFailsLoad(@TempDir Path tmp) {
    String name = L1 + "block_sparse_moe.gate.weight";
    Path dir = TestCheckpoints.copyWithTensors(tiny(), tmp.resolve("ckpt"), ts -> ts.removeIf(t -> t.name().equals(name)));
    assertLoadFailsNaming(dir, name);
  }

  @Test
  void missingLmHeadWithoutTyingFailsLoad(@TempDir Path tmp) {
    String name = "lm_head.weight";
    Path dir = TestCheckpoints.copyWithTensors(tiny(), tmp.resolve("ckpt"), ts -> ts.removeIf(t -> t.name().equals(name)));
    assertLoadFailsNaming(dir, name);
  }

  private static void assertLoadFailsNaming(Path dir, String tensor) {
    Kernels kernels = new io.moecluster.core.kernel.ScalarKernels();
    RuntimeException e =
        assertThrows(RuntimeException.class, () -> MoeModel.load(dir, kernels).close(), "load should fail");
    assertTrue(
        String.valueOf(e.getMessage()).contains(tensor), "the error should name " + tensor + " but says: " + e);
  }

  @Test
  void tokenOutsideVocabularyIsRejectedNamingTheId() {
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    try (MoeModel model = MoeModel.load(tiny(), kernels)) {
      ForwardPass fp = new ForwardPass(model, model.experts());
      int vocab = model.config().vocabSize();
      for (int bad : new int[] {vocab, vocab + 1000, -1}) {
        KvCache cache = model.newKvCache(4);
        List<StepRow> rows = List.of(new StepRow(cache, 0, 3, false), new StepRow(cache, 1, bad, true));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> fp.step(rows));
        assertTrue(e.getMessage().contains(String.valueOf(bad)), e.getMessage());
        assertTrue(cache.length() == 0, "a rejected step must not advance the cache");
      }
    } finally {
      closeKernels(kernels);
    }
  }

  /** Positions at or past max_position_embeddings are refused before any work. */
  @Test
  void positionsBeyondTheContextAreRejected(@TempDir Path tmp) {
    Path dir = TestCheckpoints.copyWithTensors(tiny(), tmp.resolve("ckpt"), ts -> {});
    TestCheckpoints.editConfig(dir, c -> c.put("max_position_embeddings", 8));
    Kernels kernels = KernelKind.VECTOR_2_THREADS.create();
    try (MoeModel model = MoeModel.load(dir, kernels)) {
      ForwardPass fp = new ForwardPass(model, model.experts());
      KvCache cache = model.newKvCache(2);
      List<StepRow> rows = new ArrayList<>();
      for (int p = 0; p < 9; p++) {
        rows.add(new StepRow(cache, p, 3, p == 8));
      }
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> fp.step(rows));
      assertTrue(e.getMessage().contains("8"), e.getMessage());
      // Exactly the context fits.
      float[][] ok = fp.step(rows.subList(0, 8).stream().map(r -> new StepRow(r.cache(), r.position(), r.token(), true)).toList());
      assertTrue(ok[7] != null);
      IllegalArgumentException again =
          assertThrows(IllegalArgumentException.class, () -> fp.step(List.of(new StepRow(cache, 8, 3, true))));
      assertTrue(again.getMessage().contains("8"), again.getMessage());
    } finally {
      closeKernels(kernels);
    }
  }
}
