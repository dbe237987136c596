package io.moecluster.deploy.commands;

import io.moecluster.core.tensor.DType;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** Parses {@code --dtype f32|bf16}. */
public final class WeightDTypeConverter implements ITypeConverter<DType> {
  @Override
  public DType convert(String value) {
    DType d = DType.parse(value);
    if (d == null || d == DType.F16) {
      throw new TypeConversionException("unknown dtype '" + value + "'; expected f32 or bf16");
    }
    return d;
  }
}
