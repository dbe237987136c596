package io.moecluster.core.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelConfigTest {

  /** The config.json of mistralai/Mixtral-8x7B-v0.1, as published. */
  private static final String MIXTRAL_8X7B =
      """
      {
        "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
        "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
        "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
        "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000
      }
      """;

  /** The config.json of Qwen/Qwen1.5-MoE-A2.7B (model_type qwen2_moe), as published. */
  private static final String QWEN2_MOE =
      """
      {
        "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
        "intermediate_size": 5632, "max_position_embeddings": 8192, "max_window_layers": 21,
        "model_type": "qwen2_moe", "num_attention_heads": 16, "num_hidden_layers": 24,
        "num_key_value_heads": 16, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 32768, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
        "use_cache": true, "use_sliding_window": false, "vocab_size": 151936,
        "decoder_sparse_step": 1, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts_per_tok": 4, "num_experts": 60,
        "norm_topk_prob": false, "output_router_logits": false, "router_aux_loss_coef": 0.001
      }
      """;

  @Test
  void readsMixtral() {
    ModelConfig c = ModelConfig.parse(MIXTRAL_8X7B);
    assertEquals(ModelFamily.MIXTRAL, c.family());
    assertEquals(4096, c.hiddenSize());
    assertEquals(128, c.headDim());
    assertEquals(8, c.numExperts());
    assertEquals(2, c.topK());
    assertEquals(14336, c.expertIntermediateSize());
    assertEquals(4, c.queriesPerKvHead());
    assertTrue(c.normTopkProb(), "Mixtral always renormalizes the top-k weights");
    assertEquals(QkNorm.NONE, c.qkNorm());
    assertEquals(32768, c.contextLength());
    assertEquals(List.of(2), c.eosTokenIds());
    assertEquals(1e6, c.ropeTheta());
  }

  @Test
  void readsQwen2MoeWithSharedExpertAndBiases() {
    ModelConfig c = ModelConfig.parse(QWEN2_MOE);
    assertEquals(ModelFamily.QWEN2_MOE, c.family());
    assertEquals(1408, c.expertIntermediateSize());
    assertEquals(5632, c.sharedExpertIntermediateSize());
    assertTrue(c.hasSharedExpert());
    assertTrue(c.attentionBias());
    assertFalse(c.normTopkProb());
    assertEquals(8192, c.contextLength(), "use_sliding_window false: the window does not cap it");
  }

  @Test
  void writesWhatItReads() {
    ModelConfig c = ModelConfig.parse(QWEN2_MOE);
    assertEquals(c, ModelConfig.parse(c.toJson()));
    ModelConfig m = ModelConfig.parse(MIXTRAL_8X7B);
    assertEquals(m, ModelConfig.parse(m.toJson()));
  }

  @Test
  void unknownModelTypeListsTheSupportedOnes() {
    var e =
        assertThrows(
            ModelConfigException.class,
            () -> ModelConfig.parse(MIXTRAL_8X7B.replace("\"mixtral\"", "\"llama\"")));
    assertTrue(e.getMessage().contains("'llama'"), e.getMessage());
    assertTrue(e.getMessage().contains("mixtral, qwen2_moe, qwen3_moe, olmoe"), e.getMessage());
  }

  @Test
  void missingModelTypeListsTheSupportedOnes() {
    var e = assertThrows(ModelConfigException.class, () -> ModelConfig.parse("{\"hidden_size\": 8}"));
    assertTrue(e.getMessage().contains("supported model types"), e.getMessage());
  }

  @Test
  void missingKeyIsNamed() {
    var e =
        assertThrows(
            ModelConfigException.class,
            () -> ModelConfig.parse(MIXTRAL_8X7B.replace("\"num_local_experts\"", "\"x\"")));
    assertTrue(e.getMessage().contains("num_local_experts"), e.getMessage());
  }

  @Test
  void wrongTypeIsNamed() {
    var e =
        assertThrows(
            ModelConfigException.class,
            () -> ModelConfig.parse(MIXTRAL_8X7B.replace("\"hidden_size\": 4096", "\"hidden_size\": \"big\"")));
    assertTrue(e.getMessage().contains("hidden_size"), e.getMessage());
  }

  @Test
  void inconsistentHeadsAreRefused() {
    var e =
        assertThrows(
            ModelConfigException.class,
            () -> ModelConfig.parse(MIXTRAL_8X7B.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5")));
    assertTrue(e.getMessage().contains("num_key_value_heads"), e.getMessage());
  }

  @Test
  void unsupportedFeaturesAreRefusedByName() {
    var e =
        assertThrows(
            ModelConfigException.class,
            () -> ModelConfig.parse(MIXTRAL_8X7B.replace("\"sliding_window\": null",
                "\"sliding_window\": null, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}")));
    assertTrue(e.getMessage().contains("rope_scaling"), e.getMessage());
    var v5 = assertThrows(ModelConfigException.class, () -> ModelConfig.parse(QWEN2_MOE.replace(
        "\"rope_theta\": 1000000.0,", "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 1e6},")));
    assertTrue(v5.getMessage().contains("rope_parameters of type 'yarn'"), v5.getMessage());
  }

  @Test
  void transformers5ConfigsReadTheirRopeThetaAndDtype() {
    String v5 = QWEN2_MOE
        .replace("\"rope_theta\": 1000000.0,", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0},")
        .replace("\"torch_dtype\": \"bfloat16\"", "\"dtype\": \"bfloat16\"");
    ModelConfig c = ModelConfig.parse(v5);
    assertEquals(1e6, c.ropeTheta());
    assertEquals("bfloat16", c.torchDtype());
    assertEquals(ModelConfig.parse(QWEN2_MOE), c);
    // A rope_scaling that names the default type is no scaling at all.
    assertEquals(ModelConfig.parse(MIXTRAL_8X7B), ModelConfig.parse(MIXTRAL_8X7B.replace(
        "\"sliding_window\": null", "\"sliding_window\": null, \"rope_scaling\": {\"rope_type\": \"default\"}")));
  }

  @Test
  void generationConfigAddsItsEndOfSequenceIds(@TempDir Path dir) throws Exception {
    Files.writeString(dir.resolve("config.json"), QWEN2_MOE);
    assertEquals(List.of(151643), ModelConfig.load(dir).eosTokenIds());
    Files.writeString(dir.resolve("generation_config.json"),
        "{\"bos_token_id\": 151643, \"eos_token_id\": [151645, 151643], \"do_sample\": true}");
    assertEquals(List.of(151643, 151645), ModelConfig.load(dir).eosTokenIds());
    Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": \"x\"}");
    var bad = assertThrows(ModelConfigException.class, () -> ModelConfig.load(dir));
    assertTrue(bad.getMessage().contains("generation_config.json"), bad.getMessage());
  }

  @Test
  void invalidJsonAndMissingFileNameTheFile(@TempDir Path dir) throws Exception {
    var missing = assertThrows(ModelConfigException.class, () -> ModelConfig.load(dir));
    assertTrue(missing.getMessage().contains("config.json"), missing.getMessage());
    Files.writeString(dir.resolve("config.json"), "{ not json");
    var bad = assertThrows(ModelConfigException.class, () -> ModelConfig.load(dir));
    assertTrue(bad.getMessage().contains(dir.resolve("config.json").toString()), bad.getMessage());
    assertTrue(bad.getMessage().contains("not valid JSON"), bad.getMessage());
  }
}
