package io.moecluster.core.tensor;

import java.util.Locale;

/** Element types of checkpoint tensors that the runtime reads, with their safetensors names. */
public enum DType {
  F32(4),
  BF16(2),
  F16(2);

  private final int byteSize;

  DType(int byteSize) {
    this.byteSize = byteSize;
  }

  public int byteSize() {
    return byteSize;
  }

  /** The name used in safetensors headers and on the command line ({@code "F32"}, ...). */
  public String safetensorsName() {
    return name();
  }

  /** Parses a safetensors dtype name or a CLI spelling ({@code bf16}); null if unsupported. */
  public static DType parse(String name) {
    return switch (name.toUpperCase(Locale.ROOT)) {
      case "F32", "FLOAT32" -> F32;
      case "BF16", "BFLOAT16" -> BF16;
      case "F16", "FLOAT16" -> F16;
      default -> null;
    };
  }
}
