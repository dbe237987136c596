package io.moecluster.core.config;

import java.util.Arrays;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The MoE model families the runtime implements, keyed by {@code model_type} in config.json. They
 * differ in the gate (renormalized top-k or not), the shared expert, q/k norms, attention biases
 * and tensor names; everything else is one code path.
 */
public enum ModelFamily {
  MIXTRAL("mixtral"),
  QWEN2_MOE("qwen2_moe"),
  QWEN3_MOE("qwen3_moe"),
  OLMOE("olmoe");

  private final String modelType;

  ModelFamily(String modelType) {
    this.modelType = modelType;
  }

  /** The {@code model_type} value in a Hugging Face config.json. */
  public String modelType() {
    return modelType;
  }

  public static Optional<ModelFamily> fromModelType(String modelType) {
    return Arrays.stream(values()).filter(f -> f.modelType.equals(modelType)).findFirst();
  }

  /** "mixtral, qwen2_moe, qwen3_moe, olmoe": for error messages. */
  public static String supportedList() {
    return Arrays.stream(values()).map(ModelFamily::modelType).collect(Collectors.joining(", "));
  }
}
