package io.moecluster.core.model;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.model.ForwardHarness.KernelKind;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Architecture settings the random checkpoints do not produce by default, made by editing a tiny
 * checkpoint's config.json (and, for head_dim, its attention tensors): each must still match the
 * reference.
 */
class ConfigVariantsTest {

  static Stream<Arguments> variants() {
    return Stream.of(
        variant("qwen2_moe norm_topk_prob=true", ModelFamily.QWEN2_MOE, c -> c.put("norm_topk_prob", true)),
        variant("qwen3_moe norm_topk_prob=false", ModelFamily.QWEN3_MOE, c -> c.put("norm_topk_prob", false)),
        variant("olmoe norm_topk_prob=true", ModelFamily.OLMOE, c -> c.put("norm_topk_prob", true)),
        variant("mixtral top-1", ModelFamily.MIXTRAL, c -> c.put("num_experts_per_tok", 1)),
        variant("qwen3_moe top-4 of 4 experts", ModelFamily.QWEN3_MOE, c -> c.put("num_experts_per_tok", 4)),
        variant(
            "mixtral rope_theta=10000, rms_norm_eps=1e-6",
            ModelFamily.MIXTRAL,
            c -> c.put("rope_theta", 10000.0).put("rms_norm_eps", 1e-6)));
  }

  private static Arguments variant(String name, ModelFamily family, Consumer<ObjectNode> edit) {
    return Arguments.of(name, family, edit);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("variants")
  void variantMatchesReference(String name, ModelFamily family, Consumer<ObjectNode> edit, @TempDir Path tmp) {
    Path dir = TestCheckpoints.copyWithConfig(TestCheckpoints.get(Preset.TINY, family, DType.F32), tmp.resolve("c"), edit);
    ForwardPassReferenceTest.checkAgainstReference(name, dir, KernelKind.VECTOR_2_THREADS, 14);
  }

  /**
   * head_dim larger than hidden_size / num_attention_heads (as in Qwen3-MoE, whose q_proj is wider
   * than the residual stream): q/k/v/o and the q/k norms get the shapes of head_dim = 32 with 4
   * query and 2 key/value heads on a hidden size of 64.
   */
  @ParameterizedTest(name = "{0} head_dim 32")
  @EnumSource(ModelFamily.class)
  void wideHeadDimMatchesReference(ModelFamily family, @TempDir Path tmp) {
    int headDim = 32;
    Path src = TestCheckpoints.get(Preset.TINY, family, DType.F32);
    int hidden = Preset.TINY.hiddenSize;
    int q = Preset.TINY.heads * headDim;
    int kv = Preset.TINY.kvHeads * headDim;
    float proj = (float) Math.sqrt(3.0 / hidden);
    Path dir =
        TestCheckpoints.copyWithTensors(
            src,
            tmp.resolve("c"),
            ts ->
                ts.replaceAll(
                    t -> {
                      String n = t.name();
                      if (!n.contains(".self_attn.")) {
                        return t;
                      }
                      String leaf = n.substring(n.indexOf(".self_attn.") + ".self_attn.".length());
                      return switch (leaf) {
                        case "q_proj.weight" -> TestCheckpoints.randomF32(n, 5, 0f, proj, q, hidden);
                        case "k_proj.weight" -> TestCheckpoints.randomF32(n, 5, 0f, proj, kv, hidden);
                        case "v_proj.weight" -> TestCheckpoints.randomF32(n, 5, 0f, proj, kv, hidden);
                        case "o_proj.weight" ->
                            TestCheckpoints.randomF32(n, 5, 0f, (float) Math.sqrt(3.0 / q), hidden, q);
                        case "q_proj.bias" -> TestCheckpoints.randomF32(n, 5, 0f, 0.03f, q);
                        case "k_proj.bias", "v_proj.bias" -> TestCheckpoints.randomF32(n, 5, 0f, 0.03f, kv);
                        case "q_norm.weight" ->
                            TestCheckpoints.randomF32(n, 5, 1f, 0.17f, family == ModelFamily.OLMOE ? q : headDim);
                        case "k_norm.weight" ->
                            TestCheckpoints.randomF32(n, 5, 1f, 0.17f, family == ModelFamily.OLMOE ? kv : headDim);
                        default -> throw new IllegalStateException("unexpected tensor " + n);
                      };
                    }));
    TestCheckpoints.editConfig(dir, c -> c.put("head_dim", headDim));
    ForwardPassReferenceTest.checkAgainstReference(family + " head_dim 32", dir, KernelKind.VECTOR_2_THREADS, 14);
  }

  /**
   * F16 checkpoints (widened to F32 on load) and checkpoints mixing F32, BF16 and F16 tensors (real
   * checkpoints keep norms or the router in F32 next to BF16 matrices).
   */
  @ParameterizedTest(name = "{0}")
  @org.junit.jupiter.params.provider.ValueSource(strings = {"all F16", "mixed F32/BF16/F16"})
  void otherStorageDtypesMatchReference(String layout, @TempDir Path tmp) {
    Path src = TestCheckpoints.get(Preset.TINY, ModelFamily.QWEN2_MOE, DType.F32);
    String[] cycle = layout.startsWith("all") ? new String[] {"F16"} : new String[] {"F32", "BF16", "F16"};
    int[] i = {0};
    Path dir =
        TestCheckpoints.copyWithTensors(
            src, tmp.resolve("c"), ts -> ts.replaceAll(t -> t.convertedFromF32(cycle[i[0]++ % cycle.length])));
    ForwardPassReferenceTest.checkAgainstReference("qwen2_moe tiny " + layout, dir, KernelKind.VECTOR_2_THREADS, 14);
    ForwardPassReferenceTest.checkAgainstReference("qwen2_moe tiny " + layout, dir, KernelKind.SCALAR, 14);
  }

  /**
   * Qwen2-MoE's shared expert wider than the routed ones (Qwen1.5-MoE-A2.7B: 5632 vs 1408): the
   * shared expert of the tiny checkpoint is replaced by one of width 3 x 128.
   */
  @Test
  void widerSharedExpertMatchesReference(@TempDir Path tmp) {
    int hidden = Preset.TINY.hiddenSize;
    int shared = 3 * Preset.TINY.ffnSize;
    Path dir =
        TestCheckpoints.copyWithTensors(
            TestCheckpoints.get(Preset.TINY, ModelFamily.QWEN2_MOE, DType.F32),
            tmp.resolve("c"),
            ts ->
                ts.replaceAll(
                    t -> {
                      String n = t.name();
                      if (n.endsWith("shared_expert.gate_proj.weight") || n.endsWith("shared_expert.up_proj.weight")) {
                        return TestCheckpoints.randomF32(n, 9, 0f, (float) Math.sqrt(3.0 / hidden), shared, hidden);
                      }
                      if (n.endsWith("shared_expert.down_proj.weight")) {
                        return TestCheckpoints.randomF32(n, 9, 0f, (float) Math.sqrt(3.0 / shared), hidden, shared);
                      }
                      return t;
                    }));
    TestCheckpoints.editConfig(dir, c -> c.put("shared_expert_intermediate_size", shared));
    ForwardPassReferenceTest.checkAgainstReference("qwen2_moe wide shared expert", dir, KernelKind.VECTOR_2_THREADS, 14);
  }
}
