package io.moecluster.core.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The architecture of a checkpoint, read from its Hugging Face {@code config.json}. One record
 * covers every {@link ModelFamily}: family differences are fields (shared expert size, q/k norm,
 * renormalization), not subclasses, so the forward pass has one code path.
 *
 * @param expertIntermediateSize the routed experts' FFN width ({@code intermediate_size} for
 *     Mixtral and OLMoE, {@code moe_intermediate_size} for Qwen)
 * @param sharedExpertIntermediateSize the always-on shared expert's width; 0 when there is none
 * @param normTopkProb whether the top-k routing weights are renormalized to sum to 1
 * @param contextLength the longest sequence the model accepts (positions are {@code < } this)
 */
public record ModelConfig(
    ModelFamily family,
    int vocabSize,
    int hiddenSize,
    int numLayers,
    int numHeads,
    int numKvHeads,
    int headDim,
    int numExperts,
    int topK,
    int expertIntermediateSize,
    int sharedExpertIntermediateSize,
    boolean normTopkProb,
    QkNorm qkNorm,
    boolean attentionBias,
    float rmsNormEps,
    double ropeTheta,
    int contextLength,
    boolean tieWordEmbeddings,
    int bosTokenId,
    List<Integer> eosTokenIds,
    String torchDtype) {

  private static final ObjectMapper JSON = new ObjectMapper();

  public ModelConfig {
    eosTokenIds = List.copyOf(eosTokenIds);
    requirePositive("vocab_size", vocabSize);
    requirePositive("hidden_size", hiddenSize);
    requirePositive("num_hidden_layers", numLayers);
    requirePositive("num_attention_heads", numHeads);
    requirePositive("num_key_value_heads", numKvHeads);
    requirePositive("head_dim", headDim);
    requirePositive("num_experts", numExperts);
    requirePositive("num_experts_per_tok", topK);
    requirePositive("expert intermediate size", expertIntermediateSize);
    requirePositive("max_position_embeddings", contextLength);
    if (numHeads % numKvHeads != 0) {
      throw new ModelConfigException(
          "num_attention_heads (" + numHeads + ") must be a multiple of num_key_value_heads ("
              + numKvHeads + ")");
    }
    if (topK > numExperts) {
      throw new ModelConfigException(
          "num_experts_per_tok (" + topK + ") exceeds the number of experts (" + numExperts + ")");
    }
    if (headDim % 2 != 0) {
      throw new ModelConfigException("head_dim must be even for rotary embeddings, got " + headDim);
    }
    if (sharedExpertIntermediateSize < 0) {
      throw new ModelConfigException("shared_expert_intermediate_size must be >= 0");
    }
  }

  private static void requirePositive(String key, int value) {
    if (value <= 0) {
      throw new ModelConfigException(key + " must be positive, got " + value);
    }
  }

  /** Query heads that share one key/value head (grouped-query attention). */
  public int queriesPerKvHead() {
    return numHeads / numKvHeads;
  }

  public boolean hasSharedExpert() {
    return sharedExpertIntermediateSize > 0;
  }

  /** Tensor names of this family. */
  public WeightNames weightNames() {
    return new WeightNames(family);
  }

  /** Reads {@code dir/config.json}, and the end-of-sequence ids of its generation_config.json. */
  public static ModelConfig load(Path dir) {
    Path file = dir.resolve("config.json");
    String text;
    try {
      text = Files.readString(file);
    } catch (NoSuchFileException e) {
      throw new ModelConfigException(file + ": not found (is " + dir + " a model directory?)");
    } catch (IOException e) {
      throw new ModelConfigException(file + ": cannot read: " + e.getMessage(), e);
    }
    ModelConfig config;
    try {
      config = parse(text);
    } catch (ModelConfigException e) {
      throw new ModelConfigException(file + ": " + e.getMessage(), e);
    }
    return config.withGenerationConfigEos(dir);
  }

  /** Parses the text of a config.json. */
  public static ModelConfig parse(String json) {
    JsonNode root;
    try {
      root = JSON.readTree(json);
    } catch (JsonProcessingException e) {
      throw new ModelConfigException("not valid JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) {
      throw new ModelConfigException("expected a JSON object");
    }
    Keys k = new Keys(root);
    String modelType = k.string("model_type", null);
    if (modelType == null) {
      throw new ModelConfigException(
          "no model_type; supported model types: " + ModelFamily.supportedList());
    }
    ModelFamily family =
        ModelFamily.fromModelType(modelType)
            .orElseThrow(
                () ->
                    new ModelConfigException(
                        "unsupported model_type '" + modelType + "'; supported model types: "
                            + ModelFamily.supportedList()));
    requireDefaultRope(root, "rope_scaling");
    requireDefaultRope(root, "rope_parameters");
    if (family == ModelFamily.QWEN2_MOE || family == ModelFamily.QWEN3_MOE) {
      if (k.integer("decoder_sparse_step", 1) != 1) {
        throw new ModelConfigException("decoder_sparse_step other than 1 is not supported");
      }
      JsonNode dense = root.get("mlp_only_layers");
      if (dense != null && dense.isArray() && !dense.isEmpty()) {
        throw new ModelConfigException("mlp_only_layers (dense layers) are not supported");
      }
    }
    if (family == ModelFamily.OLMOE && !k.isNull("clip_qkv")) {
      throw new ModelConfigException("clip_qkv is not supported");
    }

    int hidden = k.required("hidden_size");
    int heads = k.required("num_attention_heads");
    int headDim = k.integer("head_dim", heads > 0 ? hidden / heads : 0);
    int context = k.integer("max_position_embeddings", 4096);
    if (!k.isNull("sliding_window") && k.string("use_sliding_window", "true").equals("true")) {
      // Attention over a window equals full attention while the sequence fits in it.
      context = Math.min(context, k.required("sliding_window"));
    }
    boolean mixtral = family == ModelFamily.MIXTRAL;
    boolean qwen = family == ModelFamily.QWEN2_MOE || family == ModelFamily.QWEN3_MOE;
    return new ModelConfig(
        family,
        k.required("vocab_size"),
        hidden,
        k.required("num_hidden_layers"),
        heads,
        k.integer("num_key_value_heads", heads),
        headDim,
        mixtral ? k.required("num_local_experts") : k.required("num_experts"),
        k.required("num_experts_per_tok"),
        qwen ? k.required("moe_intermediate_size") : k.required("intermediate_size"),
        family == ModelFamily.QWEN2_MOE ? k.integer("shared_expert_intermediate_size", 0) : 0,
        mixtral || k.bool("norm_topk_prob", false),
        switch (family) {
          case MIXTRAL, QWEN2_MOE -> QkNorm.NONE;
          case QWEN3_MOE -> QkNorm.PER_HEAD;
          case OLMOE -> QkNorm.FULL;
        },
        family == ModelFamily.QWEN2_MOE || k.bool("attention_bias", false),
        // Defaults are those of each family's HF config class, for configs that leave keys out.
        (float) k.number("rms_norm_eps", mixtral || family == ModelFamily.OLMOE ? 1e-5 : 1e-6),
        ropeTheta(root, k, mixtral ? 1e6 : 10000.0),
        context,
        k.bool("tie_word_embeddings", false),
        k.integer("bos_token_id", -1),
        k.intList("eos_token_id"),
        // transformers 5 writes "dtype" where 4.x wrote "torch_dtype".
        k.string("torch_dtype", k.string("dtype", "float32")));
  }

  /**
   * rope_theta: at the top level (transformers 4.x), or in rope_parameters (transformers 5, which
   * drops the top-level key: read as the default, Qwen's 1e6 would become 10000 and its text
   * degrade with no error).
   */
  private static double ropeTheta(JsonNode root, Keys k, double fallback) {
    JsonNode parameters = root.get("rope_parameters");
    if (parameters != null && parameters.isObject() && parameters.has("rope_theta")) {
      return new Keys(parameters).number("rope_theta", fallback);
    }
    return k.number("rope_theta", fallback);
  }

  /**
   * Only the default rotary embedding is implemented: a rope_scaling or rope_parameters of another
   * type (yarn, dynamic, linear, llama3, ...) is refused rather than computed wrong. Either may
   * name the default type explicitly.
   */
  private static void requireDefaultRope(JsonNode root, String key) {
    JsonNode n = root.get(key);
    if (n == null || n.isNull()) {
      return;
    }
    if (!n.isObject()) {
      throw new ModelConfigException("'" + key + "' must be an object, got " + n);
    }
    JsonNode type = n.has("rope_type") ? n.get("rope_type") : n.get("type");
    String name = type == null || type.isNull() ? "default" : type.asText();
    if (!name.equals("default")) {
      throw new ModelConfigException(
          key + " of type '" + name + "' is not supported yet (only the default rotary embedding)");
    }
  }

  /**
   * Adds the end-of-sequence ids of {@code dir/generation_config.json}, where Hugging Face's
   * generate() takes them from: Qwen3's instruct models list both {@code <|im_end|>} and
   * {@code <|endoftext|>} there and only the first in config.json.
   */
  private ModelConfig withGenerationConfigEos(Path dir) {
    Path file = dir.resolve("generation_config.json");
    if (!Files.isRegularFile(file)) {
      return this;
    }
    List<Integer> extra;
    try {
      JsonNode root = JSON.readTree(Files.readString(file));
      if (root == null || !root.isObject()) {
        throw new ModelConfigException(file + ": expected a JSON object");
      }
      extra = new Keys(root).intList("eos_token_id");
    } catch (IOException e) {
      throw new ModelConfigException(file + ": cannot read: " + e.getMessage(), e);
    } catch (ModelConfigException e) {
      throw e.getMessage().startsWith(file.toString()) ? e : new ModelConfigException(file + ": " + e.getMessage(), e);
    }
    java.util.LinkedHashSet<Integer> eos = new java.util.LinkedHashSet<>(eosTokenIds);
    eos.addAll(extra);
    if (eos.size() == eosTokenIds.size()) {
      return this;
    }
    return new ModelConfig(family, vocabSize, hiddenSize, numLayers, numHeads, numKvHeads, headDim, numExperts,
        topK, expertIntermediateSize, sharedExpertIntermediateSize, normTopkProb, qkNorm, attentionBias, rmsNormEps,
        ropeTheta, contextLength, tieWordEmbeddings, bosTokenId, List.copyOf(eos), torchDtype);
  }

  /** Writes the config.json a Hugging Face loader expects for this architecture. */
  public String toJson() {
    ObjectNode o = JSON.createObjectNode();
    o.putArray("architectures").add(architectureClass());
    o.put("model_type", family.modelType());
    o.put("vocab_size", vocabSize);
    o.put("hidden_size", hiddenSize);
    o.put("num_hidden_layers", numLayers);
    o.put("num_attention_heads", numHeads);
    o.put("num_key_value_heads", numKvHeads);
    o.put("head_dim", headDim);
    o.put("num_experts_per_tok", topK);
    switch (family) {
      case MIXTRAL -> {
        o.put("num_local_experts", numExperts);
        o.put("intermediate_size", expertIntermediateSize);
      }
      case QWEN2_MOE, QWEN3_MOE -> {
        o.put("num_experts", numExperts);
        o.put("moe_intermediate_size", expertIntermediateSize);
        o.put("intermediate_size", expertIntermediateSize);
        o.put("norm_topk_prob", normTopkProb);
        o.put("decoder_sparse_step", 1);
        o.putArray("mlp_only_layers");
        if (family == ModelFamily.QWEN2_MOE) {
          o.put("shared_expert_intermediate_size", sharedExpertIntermediateSize);
        } else {
          o.put("attention_bias", attentionBias);
        }
      }
      case OLMOE -> {
        o.put("num_experts", numExperts);
        o.put("intermediate_size", expertIntermediateSize);
        o.put("norm_topk_prob", normTopkProb);
        o.put("attention_bias", attentionBias);
        o.putNull("clip_qkv");
      }
    }
    o.put("hidden_act", "silu");
    o.put("rms_norm_eps", rmsNormEps);
    o.put("rope_theta", ropeTheta);
    o.putNull("rope_scaling");
    o.put("max_position_embeddings", contextLength);
    o.putNull("sliding_window");
    o.put("tie_word_embeddings", tieWordEmbeddings);
    if (bosTokenId >= 0) {
      o.put("bos_token_id", bosTokenId);
    }
    if (eosTokenIds.size() == 1) {
      o.put("eos_token_id", eosTokenIds.getFirst());
    } else {
      var a = o.putArray("eos_token_id");
      eosTokenIds.forEach(a::add);
    }
    o.put("torch_dtype", torchDtype);
    try {
      return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(o) + "\n";
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  private String architectureClass() {
    return switch (family) {
      case MIXTRAL -> "MixtralForCausalLM";
      case QWEN2_MOE -> "Qwen2MoeForCausalLM";
      case QWEN3_MOE -> "Qwen3MoeForCausalLM";
      case OLMOE -> "OlmoeForCausalLM";
    };
  }

  /** Typed access to config keys with messages that name the key. */
  private record Keys(JsonNode root) {
    boolean isNull(String key) {
      JsonNode n = root.get(key);
      return n == null || n.isNull();
    }

    int required(String key) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) {
        throw new ModelConfigException("missing required key '" + key + "'");
      }
      return toInt(key, n);
    }

    int integer(String key, int fallback) {
      JsonNode n = root.get(key);
      return n == null || n.isNull() ? fallback : toInt(key, n);
    }

    private static int toInt(String key, JsonNode n) {
      if (!n.isIntegralNumber() || !n.canConvertToInt()) {
        throw new ModelConfigException("'" + key + "' must be an integer, got " + n);
      }
      return n.intValue();
    }

    double number(String key, double fallback) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) {
        return fallback;
      }
      if (!n.isNumber()) {
        throw new ModelConfigException("'" + key + "' must be a number, got " + n);
      }
      return n.doubleValue();
    }

    boolean bool(String key, boolean fallback) {
      JsonNode n = root.get(key);
      if (n == null || n.isNull()) {
        return fallback;
      }
      if (!n.isBoolean()) {
        throw new ModelConfigException("'" + key + "' must be true or false, got " + n);
      }
      return n.booleanValue();
    }

    String string(String key, String fallback) {
      JsonNode n = root.get(key);
      return n == null || n.isNull() ? fallback : n.asText();
    }

    List<Integer> intList(String key) {
      JsonNode n = root.get(key);
      List<Integer> out = new ArrayList<>();
      if (n == null || n.isNull()) {
        return out;
      }
      if (n.isArray()) {
        for (JsonNode e : n) {
          out.add(toInt(key, e));
        }
      } else {
        out.add(toInt(key, n));
      }
      return out;
    }
  }
}
